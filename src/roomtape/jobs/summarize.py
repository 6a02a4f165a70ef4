"""The summary job: a session's transcript into its summary (RealtimeKit's ``summarize_on_end``), off the loop.

Asked for in three ways, each leaving a ``session_summaries`` row in ``PENDING`` (the durable request, so a
restart resumes it): the session of a meeting with ``summarize_on_end`` ends; RealtimeKit's "generate summary
of transcripts" (``POST …/sessions/{id}/summary``); or a recording's job adds transcript items (roomtape's own
speech-to-text) to a session that has a summary already, which is then written again. The job runs on the
jobs runner (a task of the in-process runner, or a worker's task), never in a request; the extractive
summarizer runs in a worker thread, the HTTP one is asyncio I/O.

The transcript is read from the transcript store: each final item becomes a line with its speaker (the
participant's display name in the session), time on the session clock and text. A session without a
transcript yet whose recording is still being processed stays ``PENDING`` (its recording's job summarizes it
once transcribed); without either it is ``FAILED`` with the reason. A backend that is down or answers garbage
is retried with backoff (``summary_max_attempts``, ``summary_backoff_base_secs``), then ``FAILED``. A
``COMPLETED`` summary queues ``meeting.summary`` with the text inline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.config import Settings
from roomtape.db.models import Meeting, Recording, Session, SessionParticipant, SessionSummary, utcnow
from roomtape.db.models import TranscriptItem as ItemRow
from roomtape.db.transcript_segments import unfinished_count
from roomtape.jobs.deps import JobDeps
from roomtape.transcripts.store import list_session
from roomtape.transcripts.summary.base import Summarizer, Summary, SummaryError, TranscriptLine
from roomtape.transcripts.summary.registry import summary_backend
from roomtape.webhooks.outbox import emit

__all__ = [
    "SUMMARY_EVENT",
    "pending_summaries",
    "request_summary",
    "summarize_session",
    "summary_after_transcription",
]

log = logging.getLogger(__name__)

SUMMARY_EVENT = "meeting.summary"
_IN_PROGRESS = ("INVOKED", "RECORDING", "PAUSED", "UPLOADING")

SummarizerFactory = Callable[[Settings], Summarizer]


def request_summary(db: AsyncSession, existing: SessionSummary | None, session: Session) -> SessionSummary:
    """Mark the session's summary as wanted (``PENDING``), new or again; the caller commits."""
    row = existing or SessionSummary(session_id=session.id, app_id=session.app_id, attempts=0)
    row.status = "PENDING"
    row.error = None
    if existing is None:
        db.add(row)
    return row


async def pending_summaries(db: AsyncSession) -> list[str]:
    """Sessions whose summary was asked for and not finished (resumed at start-up)."""
    return list(
        await db.scalars(select(SessionSummary.session_id).where(SessionSummary.status.in_(("PENDING", "RUNNING"))))
    )


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value else None


async def _lines(db: AsyncSession, session_id: str) -> list[TranscriptLine]:
    names = {
        pid: name
        for pid, name in (
            await db.execute(
                select(SessionParticipant.participant_id, SessionParticipant.display_name).where(
                    SessionParticipant.session_id == session_id
                )
            )
        ).all()
        if name
    }
    lines = []
    for item in await list_session(db, session_id):
        text = (item.spoken_text if item.interrupted and item.spoken_text else item.text).strip()
        if not text:
            continue
        speaker = names.get(item.participant_id or "") or item.speaker_id or item.participant_id or item.role
        lines.append(TranscriptLine(speaker=speaker, start=item.start or 0.0, text=text))
    return lines


async def _set(deps: JobDeps, session_id: str, **fields: Any) -> None:
    async with deps.sessions() as db:
        row = await db.get(SessionSummary, session_id)
        if row is not None:
            for key, value in fields.items():
                setattr(row, key, value)
            await db.commit()


async def _run_backend(deps: JobDeps, session_id: str, backend: Summarizer, lines: list[TranscriptLine]) -> Summary:
    """The backend's summary, retried with backoff while the failure is retryable."""
    settings = deps.settings
    attempt = 0
    while True:
        attempt += 1
        async with deps.sessions() as db:
            row = await db.get(SessionSummary, session_id)
            if row is not None:
                row.attempts = (row.attempts or 0) + 1
                await db.commit()
        try:
            return await backend.summarize(lines)
        except SummaryError as exc:
            if not exc.retryable or attempt >= settings.summary_max_attempts:
                raise
            delay = float(settings.summary_backoff_base_secs * 2 ** min(attempt - 1, 10))
            log.warning("summary of session %s failed (%s); retry %d in %.1f s", session_id, exc, attempt, delay)
            await asyncio.sleep(delay)


async def summarize_session(deps: JobDeps, session_id: str, factory: SummarizerFactory = summary_backend) -> None:
    """Write the session's summary if it is ``PENDING`` (or was ``RUNNING`` when a worker died). Never raises."""
    try:
        await _summarize(deps, session_id, factory)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a summary must never take a job (or the runner) down with it
        log.exception("summary of session %s failed", session_id)
        await _set(deps, session_id, status="FAILED", error=f"{type(exc).__name__}: {exc}"[:500])


async def _summarize(deps: JobDeps, session_id: str, factory: SummarizerFactory) -> None:
    async with deps.sessions() as db:
        row = await db.get(SessionSummary, session_id)
        if row is None or row.status not in ("PENDING", "RUNNING"):
            return
        session = await db.get(Session, session_id)
        if session is not None and session.status == "ENDED" and await unfinished_count(db, session_id):
            # The live transcription's last segments: their job summarizes once they are in.
            row.status, row.error = "PENDING", "waiting for the live transcription of the session"
            await db.commit()
            return
        lines = await _lines(db, session_id)
        if not lines:
            busy = await db.scalar(
                select(func.count())
                .select_from(Recording)
                .where(Recording.session_id == session_id, Recording.status.in_(_IN_PROGRESS))
            )
            if busy:
                row.error = "waiting for the transcript of the session's recording"
            else:
                row.status, row.error = "FAILED", "the session has no transcript to summarize"
            await db.commit()
            return
        row.status = "RUNNING"
        await db.commit()
    backend = factory(deps.settings)
    try:
        summary = await _run_backend(deps, session_id, backend, lines)
    except SummaryError as exc:
        await _set(deps, session_id, status="FAILED", error=exc.message, backend=backend.name)
        return
    finally:
        await backend.aclose()
    async with deps.sessions() as db:
        row = await db.get(SessionSummary, session_id)
        session = await db.get(Session, session_id)
        if row is None or session is None:  # deleted meanwhile
            return
        row.status, row.text, row.backend, row.error = "COMPLETED", summary.text, summary.backend, None
        row.updated_at = utcnow()
        meeting = await db.get(Meeting, session.meeting_id)
        emit(
            db,
            session.app_id,
            SUMMARY_EVENT,
            {
                "event": SUMMARY_EVENT,
                "meeting": {
                    "id": session.meeting_id,
                    "sessionId": session.id,
                    "title": meeting.title if meeting else None,
                    "status": session.status,
                    "startedAt": _iso(session.started_at),
                    "endedAt": _iso(session.ended_at),
                    "organizedBy": {"id": session.app_id},
                },
                "summary": summary.text,
                "summaryBackend": summary.backend,
                "transcriptLines": len(lines),
            },
        )
        await db.commit()


async def summary_after_transcription(
    deps: JobDeps, recording_id: str, factory: SummarizerFactory = summary_backend
) -> None:
    """After a recording's job: summarize its session if a summary waits for it or is older than its transcript.

    Never raises.
    """
    try:
        async with deps.sessions() as db:
            session_id = await db.scalar(select(Recording.session_id).where(Recording.id == recording_id))
            row = await db.get(SessionSummary, session_id) if session_id else None
            if row is None or session_id is None:
                return
            if row.status in ("COMPLETED", "FAILED"):
                newest = await db.scalar(select(func.max(ItemRow.updated_at)).where(ItemRow.session_id == session_id))
                if newest is None or newest <= row.updated_at:
                    return
                session = await db.get(Session, session_id)
                if session is None:
                    return
                request_summary(db, row, session)
                await db.commit()
    except Exception:
        log.exception("checking the summary after recording %s failed", recording_id)
        return
    await summarize_session(deps, session_id, factory)
