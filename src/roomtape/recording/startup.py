"""Crash recovery: finalize half-written track files and move interrupted recordings on.

A killed server leaves WebM files without cues or duration (their flushed clusters are readable), manifests
with segments still marked "recording", and recordings in INVOKED/RECORDING/PAUSED. At start-up,
:func:`recover_interrupted` repairs every such file (:func:`roomtape.recording.repair.repair`), fixes the
manifests and ``TrackFile`` rows, and stops each recording with ``stop_reason`` ``INTERNAL_ERROR``: UPLOADING
(then finalized, or handed to the upload job) if any media was kept, ERRORED otherwise. Composite (meeting)
recordings are recovered the same way; their job then renders the composite from what was kept
(:func:`roomtape.jobs.compose.render_pending`, which also renders again a composite whose render the crash cut
short). A recording's
files live in its own directory, ``{data_dir}/recordings/{recording_id}/{session}/{participant}/{kind}/``.
``roomtape repair DIR`` runs :func:`repair_tree` on files alone, without a database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy import ColumnElement, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape.db.models import Recording, TrackFile, utcnow
from roomtape.db.transcript_segments import close_interrupted
from roomtape.media.plane import MediaPlane
from roomtape.recording.finalize import emit_track_event, local_base, prepare_upload
from roomtape.recording.manifest import MANIFEST_NAME, SegmentEntry, TrackManifest, iso_ms, load, save
from roomtape.recording.meeting import MeetingRecordings, emit_status, recording_spans
from roomtape.recording.repair import RepairError, needs_repair, repair
from roomtape.recording.service import RecordingService, Uploader, apply_segment

__all__ = ["RepairedDirectory", "recover_interrupted", "repair_track_directory", "repair_tree"]

log = logging.getLogger(__name__)

_ACTIVE = ("INVOKED", "RECORDING", "PAUSED")


class RepairedDirectory:
    """What :func:`repair_track_directory` did to one participant/kind directory."""

    def __init__(self, directory: Path, manifest: TrackManifest | None, repaired: set[str], lost: set[str]) -> None:
        self.directory = directory
        self.manifest = manifest
        """The manifest after the repair (None if the directory had none)."""
        self.repaired = repaired
        """File names that were half-written and are now finalized."""
        self.lost = lost
        """File names that held nothing readable (removed)."""


def repair_track_directory(directory: Path) -> RepairedDirectory:
    """Finalize every half-written segment file of one participant/kind directory and fix its manifest.

    A manifest entry still "recording" becomes "complete" with the frames and end time actually kept; a
    file with nothing readable is removed with its entry.

    Args:
        directory: A ``{session}/{participant}/{kind}`` directory.

    Returns:
        What was repaired and lost.
    """
    manifest_path = directory / MANIFEST_NAME
    manifest = load(manifest_path) if manifest_path.is_file() else None
    repaired: set[str] = set()
    lost: set[str] = set()
    results = {}
    for path in sorted(directory.glob("*.webm")):
        if not needs_repair(path):
            continue
        try:
            result = repair(path)
        except RepairError as exc:
            log.warning("%s: nothing readable, removed: %s", path, exc)
            path.unlink(missing_ok=True)
            lost.add(path.name)
            continue
        if result.frames == 0:
            path.unlink(missing_ok=True)
            lost.add(path.name)
            continue
        repaired.add(path.name)
        results[path.name] = result
    for tmp in directory.glob("*.repair.tmp"):
        tmp.unlink(missing_ok=True)
    if manifest is not None:
        segments: list[SegmentEntry] = []
        for entry in manifest.segments:
            if entry.file in lost or not (directory / entry.file).is_file():
                continue
            if entry.file in results:
                result = results[entry.file]
                end_ms = entry.start_epoch_ms + round(result.duration_seconds * 1000)
                last_rtp = entry.first_rtp + round(result.duration_seconds * entry.clock_rate)
                entry = entry.model_copy(
                    update={
                        "status": "complete",
                        "frames": result.frames,
                        "end_epoch_ms": end_ms,
                        "end": iso_ms(end_ms),
                        "last_rtp": max(entry.first_rtp, last_rtp),
                    }
                )
            elif entry.status == "recording":
                entry = entry.model_copy(update={"status": "complete"})
            segments.append(entry)
        manifest = manifest.model_copy(update={"segments": segments})
        save(manifest, directory)
    return RepairedDirectory(directory, manifest, repaired, lost)


def repair_tree(root: Path) -> list[RepairedDirectory]:
    """Repair every track directory (one holding WebM files) under ``root``.

    Args:
        root: A recordings directory, or a single participant/kind directory.

    Returns:
        One result per directory that held WebM files.
    """
    directories = sorted({p.parent for p in root.rglob("*.webm")})
    return [repair_track_directory(d) for d in directories]


def _directories(data_dir: Path, recording: Recording, rows: list[TrackFile]) -> set[Path]:
    base = local_base(data_dir, recording)
    found = {(base / row.path).parent for row in rows}
    session = recording.session_id
    if session:
        kinds = set(recording.config.get("kinds") or [])
        participants = recording.config.get("participant_ids")
        if participants:
            found |= {base / session / p / k for p in participants for k in kinds}
        elif (base / session).is_dir():
            found |= {d for d in (base / session).glob("*/*") if d.is_dir() and d.name in kinds}
    return {d for d in found if d.is_dir()}


async def _recover_one(db: AsyncSession, data_dir: Path, recording: Recording) -> None:
    rows = list((await db.scalars(select(TrackFile).where(TrackFile.recording_id == recording.id))).all())
    by_path = {row.path: row for row in rows}
    base = local_base(data_dir, recording)
    for directory in _directories(data_dir, recording, rows):
        done = await asyncio.to_thread(repair_track_directory, directory)
        relative = directory.relative_to(base)
        session_id, participant_id, kind = relative.parts[-3:]
        entries = {e.file: e for e in (done.manifest.segments if done.manifest else [])}
        for name in done.lost:
            row = by_path.get(str(PurePosixPath(*relative.parts, name)))
            if row is not None:
                row.status = "failed"
        for name, entry in entries.items():
            path = str(PurePosixPath(*relative.parts, name))
            row = by_path.get(path)
            if row is None:
                if name not in done.repaired:
                    continue  # a finished file of an earlier recording sharing the directory
                row = TrackFile(
                    recording_id=recording.id,
                    session_id=session_id,
                    participant_id=participant_id,
                    kind=kind,
                    index=entry.index,
                    codec=entry.codec,
                    path=path,
                )
                db.add(row)
                by_path[path] = row
            apply_segment(row, entry, (directory / name).stat().st_size)
    kept = [row for row in by_path.values() if row.status == "complete"]
    recording.stop_reason = {"reason": "INTERNAL_ERROR", "caller": {"type": "ORGANIZATION"}}
    ends = [row.ended_at for row in kept if row.ended_at is not None]
    recording.stopped_time = max(ends) if ends else utcnow()
    if kept:
        starts = [row.started_at for row in kept if row.started_at is not None]
        if recording.started_time is None and starts:
            recording.started_time = min(starts)
        recording.status = "UPLOADING"
        recording.file_size = sum(row.size for row in kept)
        if recording.started_time is not None:
            recording.recording_duration = max(
                0, round((recording.stopped_time - recording.started_time).total_seconds())
            )
        log.warning("recording %s was interrupted: kept %d file(s)", recording.id, len(kept))
        if recording.kind == "composite":
            # Its job (roomtape.jobs.compose.render_pending, then the upload) renders what was kept; a pause
            # still open ends at the crash.
            if recording.paused_at is not None:
                MeetingRecordings.close_pause(recording, recording.stopped_time)
            spans = recording_spans(recording)
            recording.recording_duration = round(sum(e - s for s, e in spans) / 1000)
            emit_status(db, recording)
    else:
        recording.status = "ERRORED"
        recording.error = recording.error or "interrupted before any media was kept"
        if recording.kind == "composite":
            emit_status(db, recording, "recording-failed")
        else:
            emit_track_event(
                db,
                recording,
                recording.participant_id or "",
                recording.track_kind or "",
                "participant-track-recording-failed",
            )
        log.warning("recording %s was interrupted before any media was kept", recording.id)


def _not_on(live_nodes: Collection[str]) -> ColumnElement[bool]:
    """Recordings no live node is writing: started by a process that is gone (or before nodes had ids)."""
    if not live_nodes:
        return true()
    return or_(Recording.node_id.is_(None), Recording.node_id.not_in(list(live_nodes)))


async def recover_interrupted(
    sessions: async_sessionmaker[AsyncSession],
    data_dir: Path,
    finalize: Callable[[str], Awaitable[object]],
    *,
    live_nodes: Collection[str] = (),
) -> list[str]:
    """Repair and move on every track recording a previous process left running; finalize stopped ones.

    Run at start-up, before any new recording starts, and (scaled, :mod:`roomtape.cluster.reaper`) whenever a
    node dies. Idempotent.

    Args:
        sessions: Database sessions.
        data_dir: The server's data directory (the dead node's, for a node that died: shared on one host).
        finalize: The finalizer (UPLOADING → UPLOADED) to run for every recording left UPLOADING.
        live_nodes: Nodes whose recordings are left alone (they are still writing them); none at an
            embedded start-up.

    Returns:
        Ids of the recordings that were interrupted.
    """
    async with sessions() as db:
        interrupted = (
            await db.scalars(
                select(Recording).where(
                    Recording.kind.in_(("track", "composite")),
                    Recording.status.in_(_ACTIVE),
                    _not_on(live_nodes),
                )
            )
        ).all()
        for recording in interrupted:
            try:
                await _recover_one(db, data_dir, recording)
            except Exception:
                log.exception("recording %s: recovery failed", recording.id)
                recording.status = "ERRORED"
                recording.error = "recovery after a crash failed"
                recording.stop_reason = {"reason": "INTERNAL_ERROR", "caller": {"type": "ORGANIZATION"}}
        ids = [r.id for r in interrupted]
        await db.commit()
        uploading = (
            await db.scalars(
                select(Recording.id).where(
                    Recording.kind == "track", Recording.status == "UPLOADING", _not_on(live_nodes)
                )
            )
        ).all()
    for recording_id in uploading:
        try:
            await finalize(recording_id)
        except Exception:
            log.exception("recording %s: finalize failed", recording_id)
    return ids


async def open_recording_service(
    media: MediaPlane,
    sessions: async_sessionmaker[AsyncSession],
    data_dir: Path,
    *,
    uploader: Uploader | None = None,
    recover: bool = True,
    live_nodes: Collection[str] = (),
    **options: Any,
) -> RecordingService:
    """Start the recording service for a server: recover what a previous process left, then attach.

    With an ``uploader`` (the job runner's ``submit_upload``), recovered recordings are only made final
    here and left UPLOADING: the job runner's ``start()``, run after this, resumes every UPLOADING upload.
    With a spool (``options["spool"]``), the stopped recordings still on this node's disk are then put in the
    spool in the background (:meth:`~roomtape.recording.spool.Shipper.flush_pending`); their jobs wait for it.

    Args:
        media: The server's media plane.
        sessions: Database sessions.
        data_dir: The data directory.
        uploader: Submits the upload of a stopped recording.
        recover: Recover interrupted recordings now (False when another process of the deployment is at it).
        live_nodes: Nodes still running; their recordings are not interrupted.
        **options: Options of :class:`~roomtape.recording.service.RecordingService`.

    Returns:
        The running service (close it with ``aclose()``).
    """
    service = await RecordingService.open(media, sessions, data_dir, uploader=uploader, **options)
    if recover:
        async with sessions() as db:
            # Live transcription segments a killed process left open: queued now (the runner's start() runs them).
            if reopened := await close_interrupted(db, live_nodes):
                log.info("%d live transcription segments left open by a stopped process are queued", reopened)
            await db.commit()
    if uploader is None:
        if recover:
            await recover_interrupted(sessions, data_dir, service.finalizer(), live_nodes=live_nodes)
    else:

        async def make_final(recording_id: str) -> None:
            await prepare_upload(sessions, data_dir, recording_id)

        if recover:
            await recover_interrupted(sessions, data_dir, make_final, live_nodes=live_nodes)
        service.flush_pending_spool()
    return service
