"""Deleting a stopped recording: its files in storage, its local files, and its rows.

The transcript stays: it belongs to the session, not to the recording.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import PurePosixPath

from sqlalchemy import delete, select

from roomtape.db.models import Recording, TrackFile
from roomtape.errors import Conflict, NotFound
from roomtape.jobs.deps import JobDeps
from roomtape.jobs.upload import choice_for, local_dir
from roomtape.recording.manifest import MANIFEST_NAME
from roomtape.recording.spool import purge

__all__ = ["DELETABLE_STATUSES", "delete_recording"]

log = logging.getLogger(__name__)

DELETABLE_STATUSES = ("UPLOADED", "ERRORED")
"""A running recording must be stopped first, and an upload in progress must finish (or fail) first."""


def stored_files(rec: Recording, track_paths: list[str]) -> list[str]:
    """Every file of the recording, relative to its storage prefix: composite, audio, tracks, manifests."""
    names = set(track_paths)
    names |= {str(PurePosixPath(p).parent / MANIFEST_NAME) for p in track_paths}
    # A track recording's output_file_name names its directory of segments (listed above), not a file.
    if rec.output_file_name and rec.kind != "track":
        names.add(rec.output_file_name)
    audio = rec.config.get("audio_file_name")
    if audio:
        names.add(str(audio))
    return sorted(names)


async def delete_recording(deps: JobDeps, recording_id: str) -> None:
    """Delete the recording's stored and local files, then its row and its track file rows.

    Raises:
        NotFound: No such recording.
        Conflict: The recording is still running or uploading.
    """
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None:
            raise NotFound("recording not found")
        if rec.status not in DELETABLE_STATUSES:
            raise Conflict(f"recording is {rec.status}: only UPLOADED or ERRORED recordings can be deleted")
        paths = list(await db.scalars(select(TrackFile.path).where(TrackFile.recording_id == rec.id)))
        if rec.config.get("source") != "livekit-agents":
            choice = choice_for(deps, rec)
            try:
                for rel in stored_files(rec, paths):
                    await choice.backend.delete(choice.key(rel))
            finally:
                await choice.backend.close()
        else:
            # LiveKit Agents uploads keep their audio under the data dir (``config["path"]``).
            rel_path = str(rec.config.get("path") or "")
            if rel_path:
                target = (deps.settings.data_dir / rel_path).resolve()
                if deps.settings.data_dir.resolve() in target.parents:
                    target.unlink(missing_ok=True)
        await purge(deps, rec.id, DELETABLE_STATUSES)
        base = local_dir(deps.settings, rec.id)
        if base.is_dir():
            await asyncio.to_thread(shutil.rmtree, base, True)
        await db.execute(delete(TrackFile).where(TrackFile.recording_id == rec.id))
        await db.delete(rec)
        await db.commit()
    log.info("recording %s deleted", recording_id)
