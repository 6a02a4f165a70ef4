"""One row by id, as a caller may see it: within an app, or within an account (every app of it).

A row outside the caller's scope is simply not found (None), so another account's objects answer like
missing ones.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import App, Meeting, Recording, Session

__all__ = ["app_meeting", "app_session", "meeting_titled", "visible_recording", "visible_session"]


async def app_session(db: AsyncSession, app_id: str, session_id: str) -> Session | None:
    """The app's session ``session_id``."""
    return await db.scalar(select(Session).where(Session.id == session_id, Session.app_id == app_id))


async def visible_session(db: AsyncSession, session_id: str, account_id: str | None) -> Session | None:
    """The session, if it belongs to ``account_id``; None as account means any (a signed link was checked)."""
    query = select(Session).where(Session.id == session_id)
    if account_id is not None:
        query = query.join(App, App.id == Session.app_id).where(App.account_id == account_id)
    return await db.scalar(query)


async def visible_recording(db: AsyncSession, recording_id: str, account_id: str | None) -> Recording | None:
    """The recording, if it belongs to ``account_id``; None as account means any (a signed link was checked)."""
    query = select(Recording).where(Recording.id == recording_id)
    if account_id is not None:
        query = query.join(App, App.id == Recording.app_id).where(App.account_id == account_id)
    return await db.scalar(query)


async def app_meeting(db: AsyncSession, app_id: str, meeting_id: str) -> Meeting | None:
    """The app's meeting ``meeting_id``."""
    return await db.scalar(select(Meeting).where(Meeting.id == meeting_id, Meeting.app_id == app_id))


async def meeting_titled(db: AsyncSession, app_id: str, title: str) -> Meeting | None:
    """The app's oldest meeting titled ``title``."""
    return await db.scalar(
        select(Meeting).where(Meeting.app_id == app_id, Meeting.title == title).order_by(Meeting.created_at).limit(1)
    )
