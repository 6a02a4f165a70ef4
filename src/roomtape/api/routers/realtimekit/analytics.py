"""``…/{app_id}/analytics/daywise``: the app's usage by day (SDK ``analytics.get_org_analytics``).

Computed from the database.

``session_stats``: sessions started per day and their participant minutes; ``recording_stats``: recordings
invoked per day and their recorded minutes. roomtape extensions: ``total_recording_bytes`` per day and
``recording_bytes`` in all, ``total_participants`` per day (distinct participants who joined).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import get_db
from roomtape.api.schemas import Envelope
from roomtape.db.analytics import daywise_usage
from roomtape.db.models import App
from roomtape.errors import InvalidInput

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/analytics", tags=["analytics"])

DEFAULT_DAYS = 30
"""Days reported when no ``start_date`` is given (ending on ``end_date``, or today)."""


class SessionDay(BaseModel):
    """One day of ``session_stats``."""

    day: str
    total_session_minutes: float
    total_sessions: int
    total_participants: int


class SessionStats(BaseModel):
    """Sessions in the period."""

    day_stats: list[SessionDay]
    sessions_count: int
    sessions_minutes_consumed: float


class RecordingDay(BaseModel):
    """One day of ``recording_stats``."""

    day: str
    total_recording_minutes: int
    total_recordings: int
    total_recording_bytes: int


class RecordingStats(BaseModel):
    """Recordings in the period."""

    day_stats: list[RecordingDay]
    recording_count: int
    recording_minutes_consumed: float
    recording_bytes: int


class Analytics(BaseModel):
    """``data`` of the day-wise analytics."""

    session_stats: SessionStats
    recording_stats: RecordingStats


def _day(name: str, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"{name}: expected a date YYYY-MM-DD, got {value!r}") from exc


def _date_query(description: str) -> str | None:
    return Query(None, max_length=10, description=description, json_schema_extra={"format": "date"})  # type: ignore[no-any-return]


@router.get("/daywise", response_model=Envelope[Analytics], summary="Day-wise analytics of the app")
async def get_org_analytics(
    start_date: str | None = _date_query("First day, YYYY-MM-DD (UTC); default 30 days before end_date"),
    end_date: str | None = _date_query("Last day, YYYY-MM-DD (UTC); default today"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> Envelope[Analytics]:
    """Sessions, participant minutes, recordings, recorded minutes and bytes per day (days with use only)."""
    end = _day("end_date", end_date) or datetime.now(UTC).date()
    start = _day("start_date", start_date) or max(date.min, end - timedelta(days=DEFAULT_DAYS - 1))
    days = await daywise_usage(db, app.id, start, end)
    sessions = [
        SessionDay(
            day=d.isoformat(),
            total_session_minutes=round(u.session_minutes, 4),
            total_sessions=u.sessions,
            total_participants=len(u.participants),
        )
        for d, u in days.items()
        if u.sessions
    ]
    recordings = [
        RecordingDay(
            day=d.isoformat(),
            total_recording_minutes=round(u.recording_minutes),
            total_recordings=u.recordings,
            total_recording_bytes=u.recording_bytes,
        )
        for d, u in days.items()
        if u.recordings
    ]
    return Envelope(
        data=Analytics(
            session_stats=SessionStats(
                day_stats=sessions,
                sessions_count=sum(u.sessions for u in days.values()),
                sessions_minutes_consumed=round(sum(u.session_minutes for u in days.values()), 4),
            ),
            recording_stats=RecordingStats(
                day_stats=recordings,
                recording_count=sum(u.recordings for u in days.values()),
                recording_minutes_consumed=round(sum(u.recording_minutes for u in days.values()), 4),
                recording_bytes=sum(u.recording_bytes for u in days.values()),
            ),
        )
    )
