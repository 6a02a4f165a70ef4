"""The queries behind the RealtimeKit sessions API: an app's sessions, and the stays (peers) in them.

A stay is one connection of a participant to a session (``SessionParticipant``, RealtimeKit's peer): a
participant who rejoins has several.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, Session, SessionParticipant

__all__ = ["app_peer", "latest_stay", "list_app_sessions", "session_with_meeting", "stays_in_session"]


async def session_with_meeting(db: AsyncSession, app_id: str, session_id: str) -> tuple[Session, Meeting] | None:
    """The app's session ``session_id`` and its meeting."""
    row = (
        await db.execute(
            select(Session, Meeting)
            .join(Meeting, Meeting.id == Session.meeting_id)
            .where(Session.id == session_id, Session.app_id == app_id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def list_app_sessions(
    db: AsyncSession,
    app_id: str,
    *,
    meeting_id: str | None = None,
    search: str | None = None,
    started_from: datetime | None = None,
    started_to: datetime | None = None,
    status: str | None = None,
    by_minutes: bool = False,
    ascending: bool = False,
    offset: int,
    limit: int,
) -> tuple[list[tuple[Session, Meeting]], int]:
    """One page of the app's sessions with their meetings, and how many match.

    Args:
        db: The database session.
        app_id: Whose sessions.
        meeting_id: Only this meeting's.
        search: A session id, or part of the meeting's title.
        started_from: Started at or after.
        started_to: Started at or before.
        status: ``LIVE`` or ``ENDED``.
        by_minutes: Order by minutes consumed (else by creation time).
        ascending: Smallest first (else largest first).
        offset: Rows before the page.
        limit: Rows in the page.
    """
    where: list[Any] = [Session.app_id == app_id]
    if meeting_id:
        where.append(Session.meeting_id == meeting_id)
    if search:
        where.append(Meeting.title.contains(search, autoescape=True) | (Session.id == search))
    if started_from:
        where.append(Session.started_at >= started_from)
    if started_to:
        where.append(Session.started_at <= started_to)
    if status:
        where.append(Session.status == status)
    base = select(Session, Meeting).join(Meeting, Meeting.id == Session.meeting_id).where(*where)
    total = int(await db.scalar(select(func.count()).select_from(base.subquery())) or 0)
    column = Session.minutes_consumed if by_minutes else Session.created_at
    order = column.asc() if ascending else column.desc()
    rows = (await db.execute(base.order_by(order, Session.id).offset(offset).limit(limit))).all()
    return [(sess, meeting) for sess, meeting in rows], total


async def app_peer(db: AsyncSession, app_id: str, peer_id: str) -> tuple[SessionParticipant, Session] | None:
    """The stay ``peer_id`` in one of the app's sessions, with its session."""
    row = (
        await db.execute(
            select(SessionParticipant, Session)
            .join(Session, Session.id == SessionParticipant.session_id)
            .where(SessionParticipant.id == peer_id, Session.app_id == app_id)
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def stays_in_session(db: AsyncSession, session_id: str, search: str | None = None) -> list[SessionParticipant]:
    """The session's stays; ``search``: part of the display name, or a participant or custom participant id."""
    where: list[Any] = [SessionParticipant.session_id == session_id]
    if search:
        where.append(
            SessionParticipant.display_name.contains(search, autoescape=True)
            | (SessionParticipant.participant_id == search)
            | (SessionParticipant.custom_participant_id == search)
        )
    return list((await db.scalars(select(SessionParticipant).where(*where))).all())


async def latest_stay(db: AsyncSession, session_id: str, participant_id: str) -> SessionParticipant | None:
    """The latest stay in the session whose stay id or participant id is ``participant_id``."""
    rows = await db.scalars(
        select(SessionParticipant)
        .where(
            SessionParticipant.session_id == session_id,
            (SessionParticipant.id == participant_id) | (SessionParticipant.participant_id == participant_id),
        )
        .order_by(SessionParticipant.joined_at.desc())
        .limit(1)
    )
    return rows.first()
