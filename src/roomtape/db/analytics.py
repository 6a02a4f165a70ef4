"""Day-wise usage of an app, from the database: sessions and participant minutes, recordings and their size.

Days are UTC calendar days of a session's start and of a recording's invocation. Participant minutes of a
session are what its stays have consumed (participants still present count up to now).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Recording, Session, SessionParticipant, utcnow

__all__ = ["DayUsage", "daywise_usage"]


@dataclass
class DayUsage:
    """One day's totals."""

    sessions: int = 0
    session_minutes: float = 0.0
    """Participant minutes of the sessions that started this day."""
    recordings: int = 0
    recording_minutes: float = 0.0
    recording_bytes: int = 0
    """Size of the recordings' files (composite, or the sum of a track recording's segments)."""
    participants: set[str] = field(default_factory=set)
    """Distinct participants who joined a session that started this day."""


async def daywise_usage(db: AsyncSession, app_id: str, start: date, end: date) -> dict[date, DayUsage]:
    """Totals for the days from ``start`` to ``end`` (both included) that had a session or a recording.

    Args:
        db: Database session.
        app_id: The app.
        start: First day (UTC).
        end: Last day (UTC).

    Returns:
        Usage by day, in order (empty when ``end`` is before ``start``).
    """
    lo = datetime.combine(start, time.min, UTC)
    hi = (
        datetime.combine(end, time.min, UTC) + timedelta(days=1) if end < date.max else datetime.max.replace(tzinfo=UTC)
    )
    days: defaultdict[date, DayUsage] = defaultdict(DayUsage)
    sessions = (
        await db.scalars(
            select(Session).where(Session.app_id == app_id, Session.started_at >= lo, Session.started_at < hi)
        )
    ).all()
    now = utcnow()
    present: defaultdict[str, float] = defaultdict(float)
    people: defaultdict[str, set[str]] = defaultdict(set)
    if sessions:
        stays = await db.scalars(
            select(SessionParticipant).where(SessionParticipant.session_id.in_([s.id for s in sessions]))
        )
        for stay in stays:
            people[stay.session_id].add(stay.participant_id)
            if stay.left_at is None:  # not yet in minutes_consumed, which is added at each leave
                present[stay.session_id] += max(0.0, (now - stay.joined_at).total_seconds() / 60.0)
    for s in sessions:
        day = days[s.started_at.astimezone(UTC).date()]
        day.sessions += 1
        day.session_minutes += s.minutes_consumed + present[s.id]
        day.participants |= people[s.id]
    recordings = (
        await db.scalars(
            select(Recording).where(
                Recording.app_id == app_id, Recording.invoked_time >= lo, Recording.invoked_time < hi
            )
        )
    ).all()
    for r in recordings:
        day = days[r.invoked_time.astimezone(UTC).date()]
        day.recordings += 1
        day.recording_minutes += (r.recording_duration or 0) / 60.0
        day.recording_bytes += int(r.file_size or 0)
    return dict(sorted(days.items()))
