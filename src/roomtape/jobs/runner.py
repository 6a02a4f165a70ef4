"""The in-process job runner (embedded default): recording jobs and webhook delivery as tasks of the server.

A recording's job (:func:`~roomtape.jobs.recording.recording_job`) renders its composite if that is still
missing, transcribes it, then uploads, then refreshes its session's summary if one is wanted. A summary job
(:func:`~roomtape.jobs.summarize.summarize_session`) writes a session's summary.
Every job is re-derived from the database at start-up: recordings in ``UPLOADING`` are run again
(idempotent), summaries ``PENDING`` or ``RUNNING`` too, live transcription segments ``pending`` or ``running``
too (:mod:`roomtape.jobs.transcribe_live`, one job per closed audio segment), and the outbox's undelivered
events are simply what the deliverer reads.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from roomtape.jobs.deps import JobDeps
from roomtape.jobs.recording import recording_job, segment_ids, summary_ids, uploading_ids
from roomtape.jobs.summarize import summarize_session
from roomtape.jobs.transcribe_live import LocalTranscriptions
from roomtape.webhooks.delivery import Deliverer


class JobRunner(Protocol):
    """What the server (and the recording engine) submits jobs to."""

    async def start(self) -> None:
        """Start, resuming every unfinished job found in the database."""
        ...

    async def submit_upload(self, recording_id: str) -> None:
        """Upload a recording that is ``UPLOADING`` (retried until it is uploaded or fails for good)."""
        ...

    async def submit_summary(self, session_id: str) -> None:
        """Write a session's summary whose row is ``PENDING`` (see :mod:`roomtape.jobs.summarize`)."""
        ...

    async def submit_transcription(self, segment_id: str) -> None:
        """Transcribe a closed live audio segment (see :mod:`roomtape.jobs.transcribe_live`)."""
        ...

    def events_committed(self) -> None:
        """Tell the deliverer new outbox events were committed (delivery also polls)."""
        ...

    async def stop(self) -> None:
        """Stop; unfinished jobs are resumed at the next start."""
        ...


class InProcessRunner:
    """Jobs as asyncio tasks of the server process."""

    def __init__(self, deps: JobDeps, deliver: bool = True) -> None:
        self._deps = deps
        self._uploads: dict[str, asyncio.Task[None]] = {}
        self._summaries: dict[str, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._deliverer = Deliverer(deps.sessions, deps.settings, deps.secret_key, deps.box) if deliver else None
        self._delivery_task: asyncio.Task[None] | None = None
        self._transcriptions = LocalTranscriptions(deps, self.events_committed)

    async def start(self) -> None:
        """Resume uploads and start delivering webhooks."""
        for recording_id in await uploading_ids(self._deps):
            await self.submit_upload(recording_id)
        for session_id in await summary_ids(self._deps):
            await self.submit_summary(session_id)
        for segment_id in await segment_ids(self._deps):
            await self.submit_transcription(segment_id)
        if self._deliverer is not None:
            self._delivery_task = asyncio.create_task(self._deliverer.run(self._stop), name="webhook-delivery")

    async def submit_upload(self, recording_id: str) -> None:
        """Start the upload unless it is already running."""
        running = self._uploads.get(recording_id)
        if running is not None and not running.done():
            return
        task = asyncio.create_task(self._upload(recording_id), name=f"upload-{recording_id}")
        self._uploads[recording_id] = task

    async def submit_summary(self, session_id: str) -> None:
        """Start the session's summary job unless it is already running."""
        running = self._summaries.get(session_id)
        if running is not None and not running.done():
            return
        self._summaries[session_id] = asyncio.create_task(self._summary(session_id), name=f"summary-{session_id}")

    async def submit_transcription(self, segment_id: str) -> None:
        """Transcribe the segment unless its job is already queued or running (nothing after :meth:`stop`)."""
        self._transcriptions.submit(segment_id)

    async def _summary(self, session_id: str) -> None:
        try:
            await summarize_session(self._deps, session_id)
        finally:
            self.events_committed()

    async def _upload(self, recording_id: str) -> None:
        try:
            await recording_job(self._deps, recording_id)
        finally:
            self.events_committed()

    def events_committed(self) -> None:
        """Wake the deliverer."""
        if self._deliverer is not None:
            self._deliverer.wake()

    async def stop(self) -> None:
        """Cancel running jobs (they resume at the next start) and close the HTTP client."""
        self._stop.set()
        await self._transcriptions.stop()
        tasks = [t for t in (*self._uploads.values(), *self._summaries.values()) if not t.done()]
        for task in tasks:
            task.cancel()
        if self._delivery_task is not None:
            tasks.append(self._delivery_task)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._deliverer is not None:
            await self._deliverer.aclose()


def make_runner(deps: JobDeps) -> JobRunner:
    """The distributed runner when ``broker_url`` is set, else the in-process one."""
    if deps.settings.broker_url:
        from roomtape.jobs.distributed import DistributedRunner

        return DistributedRunner(deps)
    return InProcessRunner(deps)
