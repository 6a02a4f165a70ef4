"""Queries on ``transcript_segments``: the live transcription's audio segments and their jobs' states.

Kept apart from the job (:mod:`roomtape.jobs.transcribe_live`) so that the transcript ingest, the summary job
and the recording service can ask "is this session still being transcribed?" without importing it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, Recording, TranscriptSegment

UNFINISHED = ("recording", "pending", "running")
"""States of a segment whose transcript items may still change."""

RESUMABLE = ("pending", "running")
"""States of a segment whose job is to be (re)run: queued, or cut short by a stop or a crash."""


def meeting_transcribed(meeting: Meeting | None, all_meetings: bool) -> bool:
    """Whether the meeting's sessions are transcribed.

    They are with RealtimeKit's ``ai_config.transcription`` object or ``transcribe_on_end``, or for every
    meeting with ``ROOMTAPE_TRANSCRIBE_ALL_MEETINGS`` (``all_meetings``).
    """
    if meeting is None:
        return False
    return bool(
        meeting.transcribe_on_end or isinstance((meeting.ai_config or {}).get("transcription"), dict) or all_meetings
    )


def segment_id(session_id: str, participant_id: str, kind: str, index: int) -> str:
    """The stable id of one segment of one track (the same on every run, so jobs are idempotent)."""
    digest = hashlib.sha256(f"{session_id}/{participant_id}/{kind}/{index}".encode()).hexdigest()[:32]
    return f"seg_{digest}"


async def unfinished_count(db: AsyncSession, session_id: str) -> int:
    """Segments of the session still open, queued or being transcribed."""
    count = await db.scalar(
        select(func.count())
        .select_from(TranscriptSegment)
        .where(TranscriptSegment.session_id == session_id, TranscriptSegment.status.in_(UNFINISHED))
    )
    return int(count or 0)


async def has_segments(db: AsyncSession, session_id: str) -> bool:
    """Whether the session is (or was) transcribed live."""
    found = await db.scalar(select(TranscriptSegment.id).where(TranscriptSegment.session_id == session_id).limit(1))
    return found is not None


async def resumable_ids(db: AsyncSession) -> list[str]:
    """Segments whose job is to be run (again), oldest first."""
    rows = await db.scalars(
        select(TranscriptSegment.id)
        .where(TranscriptSegment.status.in_(RESUMABLE))
        .order_by(TranscriptSegment.start_epoch_ms)
    )
    return list(rows)


async def close_interrupted(db: AsyncSession, live_nodes: Collection[str] = ()) -> int:
    """Queue the segments a killed server left open (its writer is gone; the file's flushed part is readable).

    Call it where interrupted recordings are recovered: at start-up before rooms open, and when a node of a
    deployment died (``live_nodes``: the nodes still running, whose open segments are left alone). The caller
    commits. Returns how many.
    """
    orphaned = or_(TranscriptSegment.node_id.is_(None), TranscriptSegment.node_id.not_in(list(live_nodes)))
    result = await db.execute(
        update(TranscriptSegment)
        .where(TranscriptSegment.status == "recording", orphaned)
        .values(status="pending")
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def overlapping(
    db: AsyncSession, session_id: str, start: datetime | None, end: datetime | None
) -> Sequence[TranscriptSegment]:
    """The session's segments that overlap ``start..end`` (either open-ended when ``None``)."""
    query = select(TranscriptSegment).where(TranscriptSegment.session_id == session_id)
    if start is not None:
        query = query.where(TranscriptSegment.end_epoch_ms >= int(start.timestamp() * 1000))
    if end is not None:
        query = query.where(TranscriptSegment.start_epoch_ms <= int(end.timestamp() * 1000))
    return (await db.scalars(query.order_by(TranscriptSegment.start_epoch_ms))).all()


def live_progress(segments: Iterable[TranscriptSegment]) -> dict[str, Any]:
    """A recording's ``transcription`` progress from the live segments in its span."""
    rows = list(segments)
    unfinished = [r for r in rows if r.status in UNFINISHED]
    failed = [r for r in rows if r.status == "failed"]
    errors = [r.error for r in failed if r.error]
    status = "running" if unfinished else "failed" if failed else "done"
    progress: dict[str, Any] = {
        "status": status,
        "mode": "live",
        "backend": next((r.backend for r in rows if r.backend), None),
        "segments": len(rows),
        "segments_done": sum(r.status == "done" for r in rows),
        "segments_failed": len(failed),
        "items": sum(r.items or 0 for r in rows),
        "error": errors[-1] if errors else None,
    }
    if not rows:
        progress["note"] = "no audio recorded"
    return progress


async def refresh_recordings(db: AsyncSession, session_id: str) -> None:
    """Write the live progress onto every recording of the session (the caller commits).

    The recordings are locked first and the segments read after: of two refreshes at once (the last
    segment's job and the recording's job), the second waits and counts what the first could not see yet.
    """
    recordings = await db.scalars(
        select(Recording)
        .where(Recording.session_id == session_id, Recording.started_time.is_not(None))
        .order_by(Recording.id)  # one lock order: two refreshes never deadlock
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    for rec in recordings:
        segments = await overlapping(db, session_id, rec.started_time, rec.stopped_time)
        rec.config = {**rec.config, "transcription": live_progress(segments)}


async def session_progress(db: AsyncSession, session_id: str) -> dict[str, Any] | None:
    """The live transcription's progress over the whole session (as :func:`live_progress`).

    ``None`` if the session is not transcribed live. Shown with the session's transcript, so the progress and
    failures of an unrecorded meeting are visible too.
    """
    if not await has_segments(db, session_id):
        return None
    progress = live_progress(await overlapping(db, session_id, None, None))
    progress.pop("note", None)
    return progress
