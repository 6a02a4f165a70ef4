"""The step after a track recording stops: UPLOADING → UPLOADED, and the ``-stopped`` webhook.

For now the files stay on local disk: :func:`finalize_recording` checks that each one is final (repairing a
half-written file if one slipped through), marks the recording UPLOADED with ``download_url`` left null, and
sends ``participant-track-recording-stopped`` with ``fileUrl`` = the file's ``file://`` URI. The storage
upload job replaces this one function (upload, verify, set download URLs, then the same transition and
webhook). It is idempotent: a recording that is not UPLOADING is left alone.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape.db.models import Recording, TrackFile
from roomtape.recording.repair import RepairError, needs_repair, repair
from roomtape.webhooks.outbox import emit
from roomtape.webhooks.videosdk_events import FileDetail, TrackRecordingEvent, track_recording_event

__all__ = ["emit_track_event", "file_path", "finalize_recording", "local_base"]

log = logging.getLogger(__name__)


def local_base(data_dir: Path, recording: Recording) -> Path:
    """The local directory the recording's ``TrackFile.path`` values are relative to."""
    bucket = str(recording.config.get("bucket_dir_path") or "")
    root = data_dir / "recordings"
    return root / bucket if bucket else root


def file_path(recording: Recording, row: TrackFile) -> str:
    """A file's path inside the storage: ``{bucketDirPath}/{sessionId}/{participantId}/{kind}/{file}``."""
    bucket = str(recording.config.get("bucket_dir_path") or "")
    return str(PurePosixPath(bucket, row.path)) if bucket else row.path


def emit_track_event(
    db: AsyncSession,
    recording: Recording,
    participant_id: str,
    kind: str,
    event: TrackRecordingEvent,
    files: Sequence[FileDetail] | None = None,
) -> None:
    """Queue a ``participant-track-recording-*`` webhook for a recording started by the VideoSDK API.

    Recordings started otherwise (RealtimeKit's track recording) send none.

    Args:
        db: The session of the state change the event reports (same transaction).
        recording: The recording.
        participant_id: The recorded participant.
        kind: The recorded kind.
        event: The webhook type.
        files: ``fileDetails`` for ``-stopped``.
    """
    if recording.config.get("api") != "videosdk":
        return
    payload = track_recording_event(
        event,
        meeting_id=recording.meeting_id,
        session_id=recording.session_id or "",
        participant_id=participant_id,
        kind=kind,
        files=files,
    )
    emit(db, recording.app_id, event, payload, target_url=recording.config.get("webhook_url"))


def _make_final(path: Path) -> int:
    """Make sure a file is finalized; returns its size."""
    if needs_repair(path):
        log.warning("%s was not finalized: repairing", path)
        repair(path)
    return path.stat().st_size


async def finalize_recording(sessions: async_sessionmaker[AsyncSession], data_dir: Path, recording_id: str) -> bool:
    """Move a stopped track recording from UPLOADING to UPLOADED, its files kept on local disk.

    Args:
        sessions: Database sessions.
        data_dir: The server's data directory.
        recording_id: The recording.

    Returns:
        True if the recording was finalized now; False if it was not UPLOADING (nothing done).
    """
    async with sessions() as db:
        recording = await db.get(Recording, recording_id)
        if recording is None or recording.status != "UPLOADING" or recording.kind != "track":
            return False
        rows = (
            await db.scalars(
                select(TrackFile)
                .where(TrackFile.recording_id == recording_id, TrackFile.status != "failed")
                .order_by(TrackFile.participant_id, TrackFile.kind, TrackFile.index)
            )
        ).all()
        base = local_base(data_dir, recording)
        by_track: dict[tuple[str, str], list[FileDetail]] = {}
        total = 0
        for row in rows:
            local = base / row.path
            try:
                row.size = await asyncio.to_thread(_make_final, local)
            except (OSError, RepairError) as exc:
                log.error("recording %s: %s is lost: %s", recording_id, local, exc)
                row.status = "failed"
                continue
            row.status = "complete"
            total += row.size
            detail = FileDetail(file_path=file_path(recording, row), file_url=local.resolve().as_uri())
            by_track.setdefault((row.participant_id, row.kind), []).append(detail)
        recording.file_size = total
        recording.download_url = None  # set by the storage upload job once files are uploaded
        if by_track:
            recording.status = "UPLOADED"
            for (participant_id, kind), files in sorted(by_track.items()):
                emit_track_event(db, recording, participant_id, kind, "participant-track-recording-stopped", files)
        else:
            recording.status = "ERRORED"
            recording.error = recording.error or "no readable media was recorded"
            emit_track_event(
                db,
                recording,
                recording.participant_id or "",
                recording.track_kind or "",
                "participant-track-recording-failed",
            )
        await db.commit()
        return True
