"""The queries behind the RealtimeKit meetings API: an app's meetings and a meeting's participants, in pages."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, Participant

__all__ = ["list_app_meetings", "list_meeting_participants"]


async def list_app_meetings(
    db: AsyncSession,
    app_id: str,
    *,
    search: str | None = None,
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    status: str | None = None,
    offset: int,
    limit: int,
) -> tuple[list[Meeting], int]:
    """One page of the app's meetings, newest first, and how many match.

    Args:
        db: The database session.
        app_id: Whose meetings.
        search: A meeting id, or part of the title.
        created_from: Created at or after.
        created_to: Created at or before.
        status: ``ACTIVE`` or ``INACTIVE``.
        offset: Rows before the page.
        limit: Rows in the page.
    """
    where: list[Any] = [Meeting.app_id == app_id]
    if search:
        where.append(Meeting.title.contains(search, autoescape=True) | (Meeting.id == search))
    if created_from is not None:
        where.append(Meeting.created_at >= created_from)
    if created_to is not None:
        where.append(Meeting.created_at <= created_to)
    if status is not None:
        where.append(Meeting.status == status)
    total = int(await db.scalar(select(func.count()).select_from(Meeting).where(*where)) or 0)
    rows = await db.scalars(
        select(Meeting).where(*where).order_by(Meeting.created_at.desc(), Meeting.id).offset(offset).limit(limit)
    )
    return list(rows.all()), total


async def list_meeting_participants(
    db: AsyncSession, meeting_id: str, *, offset: int, limit: int
) -> tuple[list[Participant], int]:
    """One page of the meeting's participants in the order they were added, and how many there are."""
    where = Participant.meeting_id == meeting_id
    total = int(await db.scalar(select(func.count()).select_from(Participant).where(where)) or 0)
    rows = await db.scalars(
        select(Participant).where(where).order_by(Participant.created_at, Participant.id).offset(offset).limit(limit)
    )
    return list(rows.all()), total
