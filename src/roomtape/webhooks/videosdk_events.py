"""VideoSDK's participant track recording webhooks (seed 001), built exactly as documented.

Every payload is ``{"webhookType": <event>, "data": {"meetingId", "sessionId", "participantId", "kind"}}``;
``participant-track-recording-stopped`` adds ``fileDetails: [{"filePath", "fileUrl"}]``. The outbox row's
``event`` is the ``webhookType``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = [
    "TRACK_RECORDING_EVENTS",
    "FileDetail",
    "TrackRecordingEvent",
    "track_recording_event",
]

TrackRecordingEvent = Literal[
    "participant-track-recording-starting",
    "participant-track-recording-started",
    "participant-track-recording-stopping",
    "participant-track-recording-stopped",
    "participant-track-recording-failed",
]
"""The five webhook types of a participant track recording, in the order a recording sends them."""

TRACK_RECORDING_EVENTS: tuple[str, ...] = get_args(TrackRecordingEvent)


@dataclass(frozen=True, slots=True)
class FileDetail:
    """One recorded file, as ``fileDetails`` lists it."""

    file_path: str
    """Path inside the storage: ``{bucketDirPath}/{sessionId}/{participantId}/{kind}/{file}``."""
    file_url: str
    """Where the file can be fetched."""


def track_recording_event(
    event: TrackRecordingEvent,
    *,
    meeting_id: str,
    session_id: str,
    participant_id: str,
    kind: str,
    files: Sequence[FileDetail] | None = None,
) -> dict[str, Any]:
    """Build a ``participant-track-recording-*`` webhook body.

    Args:
        event: The webhook type.
        meeting_id: The meeting (VideoSDK's ``roomId``/``meetingId``).
        session_id: The session being recorded.
        participant_id: The recorded participant.
        kind: ``audio``, ``video``, ``screen_audio`` or ``screen_video``.
        files: For ``-stopped`` only: the files written (required there, ignored otherwise).

    Returns:
        The JSON body, exactly the seed's shape.

    Raises:
        ValueError: If ``files`` is missing for ``-stopped``.
    """
    data: dict[str, Any] = {
        "meetingId": meeting_id,
        "sessionId": session_id,
        "participantId": participant_id,
        "kind": kind,
    }
    if event == "participant-track-recording-stopped":
        if files is None:
            raise ValueError("participant-track-recording-stopped needs fileDetails")
        data["fileDetails"] = [{"filePath": f.file_path, "fileUrl": f.file_url} for f in files]
    return {"webhookType": event, "data": data}
