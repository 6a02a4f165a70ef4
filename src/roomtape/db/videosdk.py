"""The queries behind the VideoSDK-compatible API: rooms, sessions and recordings as a VideoSDK caller sees them.

A VideoSDK caller is an account (roomtape API token: every app of the account) or one app (an HS256 JWT
signed with the app's secret, claim ``apikey``). Every query here is limited to what that caller may see, so
another account's rooms, sessions and recordings are simply not found. A VideoSDK room is a meeting; its
``roomId`` is the meeting id and its ``customRoomId`` the app's own unique name for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import App, Meeting, Participant, Recording, Session, SessionParticipant, TrackFile
from roomtape.errors import Forbidden


@dataclass(frozen=True, slots=True)
class VideoSdkCaller:
    """Who calls: an account (API token) or one app of it (app JWT)."""

    account_id: str
    """The account."""
    app_id: str | None
    """The app the JWT was signed for; None for an API token (every app of the account)."""


@dataclass(frozen=True, slots=True)
class Page:
    """A 1-based page of ``per_page`` rows."""

    page: int
    per_page: int

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.page - 1) * self.per_page


def _visible(caller: VideoSdkCaller, app_id: Any) -> ColumnElement[bool]:
    """``app_id`` (a column) names an app the caller may see."""
    if caller.app_id is not None:
        return app_id == caller.app_id  # type: ignore[no-any-return]
    return app_id.in_(select(App.id).where(App.account_id == caller.account_id))  # type: ignore[no-any-return]


async def app_for_new_room(db: AsyncSession, caller: VideoSdkCaller) -> str:
    """The app a new room goes to: the JWT's app, or the account's only app for an API token.

    Raises:
        Forbidden: the API token's account has several apps (which one is ambiguous) or none: the
            credential cannot say where the room goes.
    """
    if caller.app_id is not None:
        return caller.app_id
    apps = list(await db.scalars(select(App.id).where(App.account_id == caller.account_id).limit(2)))
    if len(apps) != 1:
        raise Forbidden(
            "this API token's account has "
            + ("no app" if not apps else "several apps")
            + ": authorize with a JWT signed by an app's secret (claim apikey = app id) to say which app"
        )
    return apps[0]


async def create_room(
    db: AsyncSession, app_id: str, custom_room_id: str | None, record_on_start: bool = False
) -> tuple[Meeting, bool]:
    """A new room, or the app's existing room with this ``custom_room_id`` (creation is idempotent on it).

    Returns ``(meeting, created)``; the caller commits.
    """
    if custom_room_id is not None:
        existing = await db.scalar(
            select(Meeting).where(Meeting.app_id == app_id, Meeting.custom_room_id == custom_room_id)
        )
        if existing is not None:
            return existing, False
    meeting = Meeting(
        app_id=app_id, title=custom_room_id, custom_room_id=custom_room_id, record_on_start=record_on_start
    )
    db.add(meeting)
    try:
        await db.flush()
    except IntegrityError:  # a concurrent create with the same customRoomId won: answer with that room
        await db.rollback()
        existing = await db.scalar(
            select(Meeting).where(Meeting.app_id == app_id, Meeting.custom_room_id == custom_room_id)
        )
        if existing is None:
            raise
        return existing, False
    return meeting, True


async def find_room(db: AsyncSession, caller: VideoSdkCaller, room_id: str) -> Meeting | None:
    """The caller's room whose ``roomId`` or ``customRoomId`` is ``room_id`` (the id wins over a custom id)."""
    rows = (
        await db.scalars(
            select(Meeting)
            .where(_visible(caller, Meeting.app_id), or_(Meeting.id == room_id, Meeting.custom_room_id == room_id))
            .order_by(Meeting.created_at)
            .limit(5)
        )
    ).all()
    exact = [m for m in rows if m.id == room_id]
    return (exact or list(rows))[0] if rows else None


async def list_rooms(db: AsyncSession, caller: VideoSdkCaller, page: Page) -> tuple[list[Meeting], int]:
    """The caller's rooms, newest first, and how many there are."""
    where = _visible(caller, Meeting.app_id)
    total = int(await db.scalar(select(func.count()).select_from(Meeting).where(where)) or 0)
    rows = await db.scalars(
        select(Meeting)
        .where(where)
        .order_by(Meeting.created_at.desc(), Meeting.id)
        .offset(page.offset)
        .limit(page.per_page)
    )
    return list(rows.all()), total


async def list_sessions(
    db: AsyncSession, caller: VideoSdkCaller, meeting_ids: Sequence[str] | None, status: str | None, page: Page
) -> tuple[list[tuple[Session, Meeting]], int]:
    """The caller's sessions (of these rooms, if given; ``status`` ``ongoing``/``ended``), newest first."""
    where: list[ColumnElement[bool]] = [_visible(caller, Session.app_id)]
    if meeting_ids is not None:
        where.append(Session.meeting_id.in_(list(meeting_ids)))
    if status == "ended":
        where.append(Session.status == "ENDED")
    elif status == "ongoing":
        where.append(Session.status != "ENDED")
    joined = select(Session, Meeting).join(Meeting, Meeting.id == Session.meeting_id).where(*where)
    total = int(await db.scalar(select(func.count()).select_from(joined.subquery())) or 0)
    rows = await db.execute(
        joined.order_by(Session.started_at.desc(), Session.id).offset(page.offset).limit(page.per_page)
    )
    return [(sess, meeting) for sess, meeting in rows.all()], total


async def find_session(db: AsyncSession, caller: VideoSdkCaller, session_id: str) -> tuple[Session, Meeting] | None:
    """One of the caller's sessions with its room."""
    row = (
        await db.execute(
            select(Session, Meeting)
            .join(Meeting, Meeting.id == Session.meeting_id)
            .where(Session.id == session_id, _visible(caller, Session.app_id))
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def session_stays(db: AsyncSession, session_ids: Sequence[str]) -> dict[str, list[SessionParticipant]]:
    """Each session's participant stays (a rejoin is another stay), in join order."""
    out: dict[str, list[SessionParticipant]] = {sid: [] for sid in session_ids}
    if not session_ids:
        return out
    rows = await db.scalars(
        select(SessionParticipant)
        .where(SessionParticipant.session_id.in_(list(session_ids)))
        .order_by(SessionParticipant.joined_at, SessionParticipant.id)
    )
    for stay in rows:
        out[stay.session_id].append(stay)
    return out


async def participant_ids(db: AsyncSession, meeting_ids: Sequence[str] | None, participant_id: str) -> list[str]:
    """Ids of the participants (of these rooms, if given) whose id or custom participant id is ``participant_id``."""
    query = select(Participant.id).where(
        or_(Participant.id == participant_id, Participant.custom_participant_id == participant_id)
    )
    if meeting_ids is not None:
        query = query.where(Participant.meeting_id.in_(list(meeting_ids)))
    return list(await db.scalars(query))


async def list_recordings(
    db: AsyncSession,
    caller: VideoSdkCaller,
    *,
    kind: str,
    page: Page,
    meeting_ids: Sequence[str] | None = None,
    session_id: str | None = None,
    participant_ids: Sequence[str] | None = None,
) -> tuple[list[tuple[Recording, Meeting]], int]:
    """The caller's recordings of ``kind`` (``composite`` or ``track``), newest first, with their rooms."""
    where: list[ColumnElement[bool]] = [_visible(caller, Recording.app_id), Recording.kind == kind]
    if meeting_ids is not None:
        where.append(Recording.meeting_id.in_(list(meeting_ids)))
    if session_id is not None:
        where.append(Recording.session_id == session_id)
    if participant_ids is not None:
        where.append(Recording.participant_id.in_(list(participant_ids)))
    joined = select(Recording, Meeting).join(Meeting, Meeting.id == Recording.meeting_id).where(*where)
    total = int(await db.scalar(select(func.count()).select_from(joined.subquery())) or 0)
    rows = await db.execute(
        joined.order_by(Recording.invoked_time.desc(), Recording.id).offset(page.offset).limit(page.per_page)
    )
    return [(rec, meeting) for rec, meeting in rows.all()], total


async def find_recording(
    db: AsyncSession, caller: VideoSdkCaller, recording_id: str, kind: str
) -> tuple[Recording, Meeting] | None:
    """One of the caller's recordings of ``kind`` with its room."""
    row = (
        await db.execute(
            select(Recording, Meeting)
            .join(Meeting, Meeting.id == Recording.meeting_id)
            .where(Recording.id == recording_id, Recording.kind == kind, _visible(caller, Recording.app_id))
        )
    ).first()
    return (row[0], row[1]) if row is not None else None


async def track_files(db: AsyncSession, recording_ids: Sequence[str]) -> dict[str, list[TrackFile]]:
    """Each track recording's segment files, in order."""
    out: dict[str, list[TrackFile]] = {rid: [] for rid in recording_ids}
    if not recording_ids:
        return out
    rows = await db.scalars(
        select(TrackFile)
        .where(TrackFile.recording_id.in_(list(recording_ids)))
        .order_by(TrackFile.recording_id, TrackFile.participant_id, TrackFile.kind, TrackFile.index)
    )
    for row in rows:
        out[row.recording_id].append(row)
    return out


async def find_participant(db: AsyncSession, meeting_id: str, participant_id: str) -> Participant | None:
    """The room's participant whose id (preferred) or custom participant id is ``participant_id``."""
    found = (
        await db.scalars(
            select(Participant)
            .where(
                Participant.meeting_id == meeting_id,
                or_(Participant.id == participant_id, Participant.custom_participant_id == participant_id),
            )
            .order_by(Participant.created_at)
        )
    ).all()
    exact = [p for p in found if p.id == participant_id]
    return (exact or list(found))[0] if found else None
