"""The step after a track recording stops: make its files final, then hand it to the storage upload job.

A track recording writes under :func:`recording_dir` (``{data_dir}/recordings/{recording_id}``), its
``TrackFile.path`` being ``{sessionId}/{participantId}/{kind}/{file}`` relative to it, with the manifests
beside the files. ``bucketDirPath`` is the *storage* prefix, so the files end at
``{bucketDirPath}/{sessionId}/{participantId}/{kind}/{file}`` in the storage (:mod:`roomtape.jobs.upload`).

:func:`prepare_upload` checks that each file is final (repairing a half-written file if one slipped
through) and leaves the recording UPLOADING for the upload job, which then sets UPLOADED and sends
``participant-track-recording-stopped`` (:func:`emit_track_event`) with the real download URLs.
:func:`finalize_recording` is the fallback without a job runner (bench, embedded tests): the files stay on
local disk and ``fileUrl`` is the file's ``file://`` URI. Both are idempotent: a recording that is not
UPLOADING is left alone.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape.db.models import Recording, Session, TrackFile
from roomtape.db.transcript_segments import unfinished_count
from roomtape.recording.repair import RepairError, needs_repair, repair
from roomtape.webhooks.outbox import emit
from roomtape.webhooks.videosdk_events import FileDetail, TrackRecordingEvent, track_recording_event

__all__ = [
    "emit_track_event",
    "file_path",
    "finalize_recording",
    "local_base",
    "prepare_upload",
    "recording_dir",
    "stt_spool_dir",
]

log = logging.getLogger(__name__)


def recording_dir(data_dir: Path, recording_id: str) -> Path:
    """Where a recording's files are written before upload: ``{data_dir}/recordings/{recording_id}``."""
    return data_dir / "recordings" / recording_id


def stt_spool_dir(data_dir: Path) -> Path:
    """Where live transcription spools audio segments until they are transcribed: ``{data_dir}/stt-spool``.

    Laid out like a recording (``{session}/{participant}/audio/``), but no recording's: nothing is uploaded.
    """
    return data_dir / "stt-spool"


async def remove_stt_spool(sessions: async_sessionmaker[AsyncSession], data_dir: Path, session_id: str) -> bool:
    """Remove an ended session's live transcription directory once none of its segments is unfinished.

    Only manifests are left in it by then (each segment file goes once transcribed). Called by the job of the
    last segment and, for a session whose jobs all finished before it ended, when its room closes; whichever
    comes second removes it. Returns whether it was removed.
    """
    async with sessions() as db:
        session = await db.get(Session, session_id)
        if session is None or session.status != "ENDED" or await unfinished_count(db, session_id):
            return False
    await asyncio.to_thread(shutil.rmtree, stt_spool_dir(data_dir) / session_id, True)
    return True


def local_base(data_dir: Path, recording: Recording) -> Path:
    """The local directory the recording's ``TrackFile.path`` values are relative to."""
    return recording_dir(data_dir, recording.id)


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
    emit(
        db, recording.app_id, event, payload, target_url=recording.config.get("webhook_url"), recording_id=recording.id
    )


def _make_final(path: Path) -> int:
    """Make sure a file is finalized; returns its size."""
    if needs_repair(path):
        log.warning("%s was not finalized: repairing", path)
        repair(path)
    return path.stat().st_size


async def _final_rows(db: AsyncSession, data_dir: Path, recording: Recording) -> list[TrackFile]:
    """Make every kept file of the recording final; returns the rows still holding media."""
    rows = (
        await db.scalars(
            select(TrackFile)
            .where(TrackFile.recording_id == recording.id, TrackFile.status.not_in(("failed", "uploaded")))
            .order_by(TrackFile.participant_id, TrackFile.kind, TrackFile.index)
        )
    ).all()
    base = local_base(data_dir, recording)
    kept: list[TrackFile] = []
    # Spooled (roomtape.recording.spool, config key "spooled"): the files are in the spool, finalized, and
    # those missing here (flushed away, or written on another host) are not lost.
    spooled = bool(recording.config.get("spooled"))
    for row in rows:
        local = base / row.path
        if spooled and not local.exists():
            row.status = "complete"
            kept.append(row)
            continue
        try:
            row.size = await asyncio.to_thread(_make_final, local)
        except (OSError, RepairError) as exc:
            log.error("recording %s: %s is lost: %s", recording.id, local, exc)
            row.status = "failed"
            continue
        row.status = "complete"
        kept.append(row)
    return kept


def _no_media(db: AsyncSession, recording: Recording) -> None:
    recording.status = "ERRORED"
    recording.error = recording.error or "no readable media was recorded"
    emit_track_event(
        db,
        recording,
        recording.participant_id or "",
        recording.track_kind or "",
        "participant-track-recording-failed",
    )


async def prepare_upload(sessions: async_sessionmaker[AsyncSession], data_dir: Path, recording_id: str) -> bool:
    """Make a stopped track recording's files final before the upload job takes it.

    Args:
        sessions: Database sessions.
        data_dir: The server's data directory.
        recording_id: The recording.

    Returns:
        True if the recording is UPLOADING with media to upload (submit it); False otherwise (not
        UPLOADING, or nothing readable was kept: then it is ERRORED with ``-failed``).
    """
    async with sessions() as db:
        recording = await db.get(Recording, recording_id)
        if recording is None or recording.status != "UPLOADING" or recording.kind != "track":
            return False
        kept = await _final_rows(db, data_dir, recording)
        uploaded = await db.scalar(
            select(TrackFile.id).where(TrackFile.recording_id == recording_id, TrackFile.status == "uploaded").limit(1)
        )
        if not kept and uploaded is None:
            _no_media(db, recording)
            await db.commit()
            return False
        await db.commit()
        return True


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
        base = local_base(data_dir, recording)
        by_track: dict[tuple[str, str], list[FileDetail]] = {}
        total = 0
        for row in await _final_rows(db, data_dir, recording):
            local = base / row.path
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
            _no_media(db, recording)
        await db.commit()
        return True
