"""The jobs themselves, as the in-process runner and the distributed workers both run them.

A recording's job (:func:`recording_job`) fetches its track files from the spool (when there is one, see
:mod:`roomtape.recording.spool`), renders its composite if that is still missing, transcribes it, then uploads
until done, deletes the spooled copies, then refreshes its session's summary if one is wanted. The ``*_ids``
functions find what is unfinished, so every runner re-derives its work from the database at start-up.

A module of its own so that :mod:`roomtape.jobs.runner` (which chooses a runner) and
:mod:`roomtape.jobs.distributed` (one of them) both depend on it and not on each other.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from roomtape.db.models import Recording
from roomtape.db.transcript_segments import resumable_ids
from roomtape.errors import RoomtapeError
from roomtape.jobs.compose import render_pending
from roomtape.jobs.deps import JobDeps
from roomtape.jobs.summarize import pending_summaries, summary_after_transcription
from roomtape.jobs.transcribe import transcribe_pending
from roomtape.jobs.upload import upload_recording
from roomtape.recording.spool import fetch, purge

__all__ = [
    "UPLOAD_RETRY_MAX_SECS",
    "recording_job",
    "retry_delay",
    "segment_ids",
    "summary_ids",
    "upload_until_done",
    "uploading_ids",
]

log = logging.getLogger(__name__)

UPLOAD_RETRY_MAX_SECS = 60.0


def retry_delay(attempt: int) -> float:
    """Seconds to wait before retrying an upload after ``attempt`` failures: 0.5 s doubling, capped at 60 s."""
    return float(min(UPLOAD_RETRY_MAX_SECS, 0.5 * 2 ** min(attempt, 16)))


async def summary_ids(deps: JobDeps) -> list[str]:
    """Sessions whose summary is unfinished."""
    async with deps.sessions() as db:
        return await pending_summaries(db)


async def segment_ids(deps: JobDeps) -> list[str]:
    """Live transcription segments whose job is unfinished (:mod:`roomtape.jobs.transcribe_live`)."""
    async with deps.sessions() as db:
        return await resumable_ids(db)


async def uploading_ids(deps: JobDeps) -> list[str]:
    """Recordings whose upload is unfinished."""
    async with deps.sessions() as db:
        return list(await db.scalars(select(Recording.id).where(Recording.status == "UPLOADING")))


async def upload_until_done(deps: JobDeps, recording_id: str) -> None:
    """Run :func:`upload_recording` until it no longer fails with a retryable error."""
    attempt = 0
    while True:
        try:
            await upload_recording(deps, recording_id)
            return
        except RoomtapeError as exc:
            if not exc.retryable:
                raise
        except Exception:
            log.exception("upload of recording %s failed unexpectedly; retrying", recording_id)
        await asyncio.sleep(retry_delay(attempt))
        attempt += 1


async def recording_job(deps: JobDeps, recording_id: str) -> None:
    """The whole job of a stopped recording: fetch, render, transcribe, upload.

    Fetches its files from the spool (waiting until its media node spooled them), renders its composite if
    needed, transcribes its audio if its meeting asks for it
    (:mod:`roomtape.jobs.transcribe`, never failing the job), then uploads until done.
    """
    await fetch(deps, recording_id)
    if await render_pending(deps, recording_id):
        await transcribe_pending(deps, recording_id)
        await upload_until_done(deps, recording_id)
        await purge(deps, recording_id)
        # After the upload, so a summary never delays the recording; the transcript is in the database.
        await summary_after_transcription(deps, recording_id)
