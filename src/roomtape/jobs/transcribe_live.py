"""Live transcription: each participant's audio, segment by segment, while the meeting goes on.

A meeting that asks for transcription (``ai_config.transcription``, ``transcribe_on_end`` or
``ROOMTAPE_TRANSCRIBE_ALL_MEETINGS``: :func:`roomtape.jobs.transcribe.transcription_options`) gets a
transcription spool for each session, recorded or not: the recording service writes every participant's audio
track as Opus segment files under ``{data_dir}/stt-spool/`` exactly as a track recording would (the packets
are muxed as received, nothing is decoded on the media path). When a segment closes (mute, a pause in the
audio longer than the gap, the participant leaving, the session ending), its ``transcript_segments`` row
becomes ``pending`` and this job is queued through the job runner (in-process by default, ``roomtape worker``
with a broker). The job decodes the file in a thread, transcribes it (PocketSphinx in its worker process, or
the HTTP backend), stores the items (speaker = the participant's name, start/end on the session clock from
the segment's timing manifest, word timings) and removes the spool file. So the transcript fills while the
meeting goes on, and after the end only the last segments are left to do.

Idempotent per segment: the row's id is stable per (session, participant, kind, index) and item ids are
``stt-{segment id}-{n}``; a second run of a finished segment does nothing, a resumed one (after a stop or a
crash, ``pending``/``running`` rows are queued again at start-up) replaces its own items.

``meeting.transcript`` waits for the live transcription: while a segment of an ended session is unfinished,
:func:`roomtape.transcripts.ingest.on_session_ended` queues nothing, and the job that finishes the last one
queues it (so a meeting transcribed live gets one event, with every segment in it). The session row is
locked (``FOR UPDATE``) while deciding, so the session's end and the last job cannot both miss it. A
pending summary (``summarize_on_end``) is written after that.

A backend that is down or answers garbage is retried with backoff per segment (``stt_max_attempts``,
``stt_backoff_base_secs``); a segment that still fails is ``failed`` with the reason. Every recording of the
session shows the progress of the segments in its span (``config["transcription"]``, ``mode: "live"``).
The agent of an agent session is not transcribed (its own transcript says what it said).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import delete, select

from roomtape.db.models import Meeting, Recording, Session, SessionParticipant, TranscriptSegment
from roomtape.db.models import TranscriptItem as ItemRow
from roomtape.db.transcript_segments import refresh_recordings, unfinished_count
from roomtape.jobs.deps import JobDeps
from roomtape.jobs.summarize import summarize_session
from roomtape.jobs.transcribe import BackendFactory, transcribe_file, transcription_options
from roomtape.recording.finalize import remove_stt_spool
from roomtape.transcripts.ingest import on_session_ended
from roomtape.transcripts.links import TranscriptLinks
from roomtape.transcripts.store import add_items
from roomtape.transcripts.stt.base import SttError, SttOptions, Transcription
from roomtape.transcripts.stt.registry import stt_backend
from roomtape.transcripts.stt.utterances import segment_items

log = logging.getLogger(__name__)


def item_prefix(segment_id: str) -> str:
    """Ids of a segment's items are ``{prefix}-{n}``."""
    return f"stt-{segment_id}"


async def _agents(db: Any, session_id: str) -> set[str]:
    """Participants of the session that are agents: they report their own transcript."""
    agents = set(
        await db.scalars(
            select(ItemRow.participant_id).where(
                ItemRow.session_id == session_id, ItemRow.role == "assistant", ItemRow.participant_id.is_not(None)
            )
        )
    )
    for config in await db.scalars(select(Recording.config).where(Recording.session_id == session_id)):
        agent = ((config or {}).get("compose") or {}).get("agent_participant_id")
        if agent:
            agents.add(str(agent))
    return agents


async def transcribe_segment(deps: JobDeps, segment_id: str, factory: BackendFactory = stt_backend) -> None:
    """Transcribe one closed segment if it is not done yet. Never raises (a failure is kept on the row)."""
    try:
        await _run(deps, segment_id, factory)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("live transcription of segment %s failed", segment_id)
        session_id = await _finish(deps, segment_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:500])
        if session_id is not None:
            await after_segment(deps, session_id)


async def _finish(deps: JobDeps, segment_id: str, **fields: Any) -> str | None:
    async with deps.sessions() as db:
        row = await db.get(TranscriptSegment, segment_id)
        if row is None:
            return None
        for key, value in fields.items():
            setattr(row, key, value)
        await db.commit()
        return row.session_id


async def _run(deps: JobDeps, segment_id: str, factory: BackendFactory) -> None:
    settings = deps.settings
    async with deps.sessions() as db:
        row = await db.get(TranscriptSegment, segment_id)
        if row is None or row.status not in ("pending", "running"):
            return  # done, failed, or still being written: nothing to do (a duplicate run ends here)
        session = await db.get(Session, row.session_id)
        if session is None:
            return
        meeting = await db.get(Meeting, session.meeting_id)
        options = transcription_options(meeting, settings) or SttOptions()
        session_id, app_id, session_start = session.id, row.app_id, session.started_at.timestamp()
        participant_id, start_epoch = row.participant_id, row.start_epoch_ms / 1000
        path = settings.data_dir / row.path
        name = await db.scalar(
            select(SessionParticipant.display_name)
            .where(SessionParticipant.session_id == session_id, SessionParticipant.participant_id == participant_id)
            .order_by(SessionParticipant.joined_at.desc())
            .limit(1)
        )
        agent = participant_id in await _agents(db, session_id)
        row.status = "done" if agent else "running"
        row.attempts = (row.attempts or 0) + (0 if agent else 1)
        if agent:
            row.error = "not transcribed: the participant is an agent (its own transcript says what it said)"
        await db.commit()
    if agent:
        path.unlink(missing_ok=True)
        await after_segment(deps, session_id)
        return
    backend = factory(settings)
    heard: Transcription | None = None
    error: str | None = None
    try:
        heard = await transcribe_file(settings, backend, path, options)
    except SttError as exc:
        error = exc.message[:500]
        log.error("live speech-to-text of segment %s (%s) failed: %s", segment_id, path.name, exc.message)
    finally:
        await backend.aclose()
    prefix = item_prefix(segment_id)
    items = (
        segment_items(
            heard,
            item_prefix=prefix,
            session_id=session_id,
            session_start_epoch=session_start,
            segment_start_epoch=start_epoch,
            participant_id=participant_id,
            speaker_id=name,
            now=time.time(),
        )
        if heard is not None
        else []
    )
    async with deps.sessions() as db:
        # Locked: of two runs of the same segment (a message redelivered to a second worker), the one that
        # comes second finds the segment done and stores nothing.
        row = await db.scalar(select(TranscriptSegment).where(TranscriptSegment.id == segment_id).with_for_update())
        if row is None or row.status not in ("pending", "running"):
            return
        # A resumed run replaces what an earlier run of the same segment stored (it may hear fewer utterances).
        await db.execute(delete(ItemRow).where(ItemRow.session_id == session_id, ItemRow.item_id.like(f"{prefix}-%")))
        await add_items(db, app_id, items)
        row.status = "failed" if error is not None else "done"
        row.error, row.items, row.backend = error, len(items), backend.name
        await db.commit()
    path.unlink(missing_ok=True)  # the spool only holds audio still to be transcribed
    log.info("segment %s of session %s: %s, %d items", segment_id, session_id, row.status, len(items))
    await after_segment(deps, session_id)


async def after_segment(deps: JobDeps, session_id: str) -> None:
    """After a segment finished: its progress onto the session's recordings.

    If it was the last unfinished segment of an ended session: ``meeting.transcript`` and the pending summary.
    """
    async with deps.sessions() as db:
        # Locked so that the session's end (which updates this row, then asks the same question) and the last
        # job cannot both decide that the other one queues meeting.transcript.
        session = await db.scalar(select(Session).where(Session.id == session_id).with_for_update())
        if session is None:
            return
        left = await unfinished_count(db, session_id)
        await refresh_recordings(db, session_id)
        last = left == 0 and session.status == "ENDED"
        if last:
            links = TranscriptLinks(deps.secret_key, deps.settings.resolved_public_url)
            await on_session_ended(db, session_id, links=links, link_ttl_secs=deps.settings.download_url_ttl_secs)
        await db.commit()
    if last:
        await remove_stt_spool(deps.sessions, deps.settings.data_dir, session_id)
        await summarize_session(deps, session_id)


STT_CONCURRENCY = 2
"""Segments one process transcribes at once: the embedded backend decodes one at a time anyway, and an HTTP
backend should not get a whole meeting's segments in one burst at its end."""


class LocalTranscriptions:
    """Live transcription jobs as asyncio tasks of this process, :data:`STT_CONCURRENCY` at a time.

    The in-process runner's, and the distributed runner's when the segment files are not on a shared data
    directory (``ROOMTAPE_SPOOL_URL`` set: a worker elsewhere could not read them).

    Args:
        deps: What the jobs need.
        done: Called after each job (the runner wakes its webhook deliverer).
    """

    def __init__(self, deps: JobDeps, done: Callable[[], None] | None = None) -> None:
        self._deps = deps
        self._done = done
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._slots = asyncio.Semaphore(STT_CONCURRENCY)
        self._stopped = False

    def submit(self, segment_id: str) -> None:
        """Start the segment's job unless it is queued or running already.

        After :meth:`stop` nothing starts: the segment stays ``pending`` and the next start-up queues it.
        """
        running = self._tasks.get(segment_id)
        if self._stopped or (running is not None and not running.done()):
            return
        self._tasks[segment_id] = asyncio.create_task(self._run(segment_id), name=f"stt-{segment_id}")

    async def _run(self, segment_id: str) -> None:
        try:
            async with self._slots:
                await transcribe_segment(self._deps, segment_id)
        finally:
            if self._tasks.get(segment_id) is asyncio.current_task():
                del self._tasks[segment_id]  # a meeting has many segments: keep only the unfinished ones
            if self._done is not None:
                self._done()

    async def stop(self) -> None:
        """Cancel the running jobs (their segments stay ``pending``/``running`` and are resumed at start-up)."""
        self._stopped = True
        tasks = [t for t in self._tasks.values() if not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
