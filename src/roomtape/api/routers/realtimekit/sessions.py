"""``/accounts/{account_id}/realtime/kit/{app_id}/sessions``: past and live sessions and who was in them."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import get_context, get_db
from roomtape.api.routers.downloads import signer_of
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import (
    Page,
    TimeQuery,
    iso,
    parse_time,
    session_out,
    session_participant_out,
)
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Paging, paging
from roomtape.db.chat import chat_csv, list_session_chat
from roomtape.db.models import App, Meeting, Session, SessionParticipant, SessionSummary, utcnow
from roomtape.errors import Conflict, NotFound
from roomtape.jobs.summarize import request_summary
from roomtape.storage.exports import publish_export

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/sessions", tags=["sessions"])


class SessionListResponse(BaseModel):
    """Response of "list sessions"."""

    success: bool = True
    data: s.SessionList
    paging: Paging


class SessionResponse(BaseModel):
    """Response of "get session"."""

    success: bool = True
    data: s.SessionOut


class SessionParticipantsResponse(BaseModel):
    """Response of "list session participants"."""

    success: bool = True
    data: s.SessionParticipantList
    paging: Paging


class SessionParticipantResponse(BaseModel):
    """Response of "get session participant"."""

    success: bool = True
    data: s.SessionParticipantDetail


class SessionChat(BaseModel):
    """Where to download a session's chat (RealtimeKit's shape)."""

    chat_download_url: str
    """Signed URL of the chat export (CSV)."""
    chat_download_url_expiry: str
    """When the URL stops working (ISO 8601)."""


class SessionChatResponse(BaseModel):
    """Response of "get session chat"."""

    success: bool = True
    data: SessionChat


class SummaryJob(BaseModel):
    """A summary that was asked for (RealtimeKit's shape; ``status`` is the job's)."""

    session_id: str
    status: Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"]


class SummaryJobResponse(BaseModel):
    """Response of "generate summary of transcripts"."""

    success: bool = True
    data: SummaryJob


class SessionSummaryLink(BaseModel):
    """Where to download a session's summary (RealtimeKit's shape, camelCase as in its API)."""

    session_id: str = Field(serialization_alias="sessionId")
    summary_download_url: str = Field(serialization_alias="summaryDownloadUrl")
    """Signed URL of the summary (plain text)."""
    summary_download_url_expiry: str = Field(serialization_alias="summaryDownloadUrlExpiry")
    """When the URL stops working (ISO 8601)."""
    backend: str | None = None
    """Which summarizer wrote it (roomtape addition): ``extractive`` or ``openai-compatible/<model>``."""


class SessionSummaryResponse(BaseModel):
    """Response of "get session summary"."""

    success: bool = True
    data: SessionSummaryLink


async def get_session(db: AsyncSession, app: App, session_id: str) -> tuple[Session, Meeting]:
    """The app's session and its meeting, or 404."""
    row = (
        await db.execute(
            select(Session, Meeting)
            .join(Meeting, Meeting.id == Session.meeting_id)
            .where(Session.id == session_id, Session.app_id == app.id)
        )
    ).first()
    if row is None:
        raise NotFound("session not found")
    return row[0], row[1]


@router.get("", response_model=SessionListResponse, summary="List sessions")
async def list_sessions(
    page: Page = Depends(),
    associated_id: str | None = Query(None, max_length=64, pattern=NO_NUL, description="Only sessions of this meeting"),
    search: str | None = Query(
        None, max_length=255, pattern=NO_NUL, description="Session id, or part of the meeting title"
    ),
    start_time: str | None = TimeQuery("Started at or after (ISO 8601)"),
    end_time: str | None = TimeQuery("Started at or before (ISO 8601)"),
    status: Literal["LIVE", "ENDED"] | None = None,
    participants: str | None = Query(
        None, max_length=255, pattern=NO_NUL, description="Accepted for compatibility; unused"
    ),
    sort_by: Literal["minutesConsumed", "createdAt"] = "createdAt",
    sort_order: Literal["ASC", "DESC"] = "DESC",
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionListResponse:
    """The app's sessions, newest first unless sorted otherwise."""
    where: list[Any] = [Session.app_id == app.id]
    if associated_id:
        where.append(Session.meeting_id == associated_id)
    if search:
        where.append(Meeting.title.contains(search, autoescape=True) | (Session.id == search))
    start, end = parse_time("start_time", start_time), parse_time("end_time", end_time)
    if start:
        where.append(Session.started_at >= start)
    if end:
        where.append(Session.started_at <= end)
    if status:
        where.append(Session.status == status)
    base = select(Session, Meeting).join(Meeting, Meeting.id == Session.meeting_id).where(*where)
    total = int(await db.scalar(select(func.count()).select_from(base.subquery())) or 0)
    column = Session.minutes_consumed if sort_by == "minutesConsumed" else Session.created_at
    order = column.asc() if sort_order == "ASC" else column.desc()
    rows = (await db.execute(base.order_by(order, Session.id).offset(page.offset).limit(page.per_page))).all()
    now = utcnow()
    data = [session_out(sess, meeting, now) for sess, meeting in rows]
    return SessionListResponse(data=s.SessionList(sessions=data), paging=paging(total, page.offset, len(data)))


@router.get("/{session_id}", response_model=SessionResponse, summary="Get a session")
async def get_session_details(
    session_id: str,
    include_breakout_rooms: bool = False,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionResponse:
    """One session."""
    sess, meeting = await get_session(db, app, session_id)
    return SessionResponse(data=session_out(sess, meeting))


@router.get(
    "/{session_id}/participants",
    response_model=SessionParticipantsResponse,
    summary="List session participants",
)
async def list_session_participants(
    session_id: str,
    page: Page = Depends(),
    include_peer_events: bool = False,
    search: str | None = Query(None, max_length=255, pattern=NO_NUL, description="Part of the display name, or an id"),
    sort_by: Literal["joinedAt", "duration"] = "joinedAt",
    sort_order: Literal["ASC", "DESC"] = "ASC",
    view: Literal["raw", "consolidated"] = "raw",
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionParticipantsResponse:
    """Everyone who was in the session: one row per stay (``raw``) or per participant (``consolidated``)."""
    sess, _ = await get_session(db, app, session_id)
    where: list[Any] = [SessionParticipant.session_id == sess.id]
    if search:
        where.append(
            SessionParticipant.display_name.contains(search, autoescape=True)
            | (SessionParticipant.participant_id == search)
            | (SessionParticipant.custom_participant_id == search)
        )
    stays = list((await db.scalars(select(SessionParticipant).where(*where))).all())
    now = utcnow()
    out = [session_participant_out(st, include_peer_events, now) for st in stays]
    if view == "consolidated":
        out = _consolidate(out)
    key = (lambda p: p.duration) if sort_by == "duration" else (lambda p: p.joined_at)
    out.sort(key=key, reverse=sort_order == "DESC")
    total = len(out)
    page_rows = out[page.offset : page.offset + page.per_page]
    return SessionParticipantsResponse(
        data=s.SessionParticipantList(participants=page_rows),
        paging=paging(total, page.offset, len(page_rows)),
    )


def _consolidate(stays: list[s.SessionParticipantOut]) -> list[s.SessionParticipantOut]:
    """One row per participant: first join, last leave, total duration, all events."""
    merged: dict[str, s.SessionParticipantOut] = {}
    for st in sorted(stays, key=lambda p: p.joined_at):
        prev = merged.get(st.user_id)
        if prev is None:
            merged[st.user_id] = st.model_copy()
            continue
        prev.duration = round(prev.duration + st.duration, 4)
        prev.left_at = st.left_at if prev.left_at is not None else None
        if prev.peer_events is not None and st.peer_events is not None:
            prev.peer_events = prev.peer_events + st.peer_events
    return list(merged.values())


@router.get(
    "/{session_id}/participants/{participant_id}",
    response_model=SessionParticipantResponse,
    summary="Get a session participant",
)
async def get_session_participant(
    session_id: str,
    participant_id: str,
    include_peer_events: bool = False,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionParticipantResponse:
    """A participant's stay in the session, by stay (peer) id or participant id."""
    sess, _ = await get_session(db, app, session_id)
    stay = (
        await db.scalars(
            select(SessionParticipant)
            .where(
                SessionParticipant.session_id == sess.id,
                (SessionParticipant.id == participant_id) | (SessionParticipant.participant_id == participant_id),
            )
            .order_by(SessionParticipant.joined_at.desc())
            .limit(1)
        )
    ).first()
    if stay is None:
        raise NotFound("participant not found in this session")
    return SessionParticipantResponse(
        data=s.SessionParticipantDetail(participant=session_participant_out(stay, include_peer_events))
    )


@router.get("/{session_id}/chat", response_model=SessionChatResponse, summary="Get a session's chat download URL")
async def get_session_chat(
    session_id: str,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionChatResponse:
    """A signed, expiring URL of the session's chat as CSV (kept when the meeting has ``persist_chat``).

    404 when nothing of the session's chat was kept: its meeting did not persist chat, or no one wrote.
    """
    sess, meeting = await get_session(db, app, session_id)
    rows = await list_session_chat(db, sess.id)
    if not rows:
        why = "no one wrote" if meeting.persist_chat else "its meeting does not persist_chat"
        raise NotFound(f"this session has no stored chat: {why}")
    await db.close()
    ctx = get_context(request)
    signed = await publish_export(
        ctx.settings,
        signer_of(ctx),
        app_id=app.id,
        session_id=sess.id,
        kind="chat",
        file_name="chat.csv",
        content=chat_csv(rows),
        expires_in=ctx.settings.download_url_ttl_secs,
    )
    return SessionChatResponse(
        data=SessionChat(chat_download_url=signed.url, chat_download_url_expiry=iso(signed.expires_at))
    )


@router.post(
    "/{session_id}/summary",
    response_model=SummaryJobResponse,
    status_code=202,
    summary="Generate the summary of a session's transcript",
)
async def generate_summary_of_transcripts(
    session_id: str,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SummaryJobResponse:
    """Queue the summary (again); it is written by the jobs runner and announced with ``meeting.summary``."""
    sess, _ = await get_session(db, app, session_id)
    row = await db.get(SessionSummary, sess.id)
    if row is not None and row.status in ("PENDING", "RUNNING"):
        return SummaryJobResponse(data=SummaryJob(session_id=sess.id, status=row.status))
    request_summary(db, row, sess)
    await db.commit()
    jobs = get_context(request).jobs
    if jobs is not None:
        await jobs.submit_summary(sess.id)
    return SummaryJobResponse(data=SummaryJob(session_id=sess.id, status="PENDING"))


@router.get(
    "/{session_id}/summary",
    response_model=SessionSummaryResponse,
    response_model_by_alias=True,
    summary="Get a session's summary download URL",
)
async def get_session_summary(
    session_id: str,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionSummaryResponse:
    """A signed, expiring URL of the summary as plain text.

    404 when no summary was asked for; 409 while it is being written or when it failed (with the reason).
    """
    sess, _ = await get_session(db, app, session_id)
    row = await db.get(SessionSummary, sess.id)
    if row is None:
        raise NotFound("this session has no summary: its meeting does not summarize_on_end and none was requested")
    if row.status != "COMPLETED" or row.text is None:
        why = f": {row.error}" if row.error else ""
        raise Conflict(f"the summary is {row.status}{why}")
    text, backend = row.text, row.backend
    await db.close()
    ctx = get_context(request)
    signed = await publish_export(
        ctx.settings,
        signer_of(ctx),
        app_id=app.id,
        session_id=sess.id,
        kind="summary",
        file_name="summary.txt",
        content=text.encode("utf-8"),
        expires_in=ctx.settings.download_url_ttl_secs,
    )
    return SessionSummaryResponse(
        data=SessionSummaryLink(
            session_id=sess.id,
            summary_download_url=signed.url,
            summary_download_url_expiry=iso(signed.expires_at),
            backend=backend,
        )
    )
