"""``.../meetings/{meeting_id}/active-session``: the live session of a meeting, and removing people from it."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import ServerContext, get_context, get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import iso, session_out
from roomtape.api.routers.realtimekit.meetings import get_meeting
from roomtape.api.schemas import Envelope
from roomtape.db import lifecycle
from roomtape.db.models import App, Participant
from roomtape.errors import Conflict, NotFound
from roomtape.media.polls import Poll

router = APIRouter(
    prefix="/accounts/{account_id}/realtime/kit/{app_id}/meetings/{meeting_id}/active-session",
    tags=["active-session"],
)


@router.get("", response_model=Envelope[s.SessionOut], summary="Get the active session")
async def get_active_session(
    meeting_id: str, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.SessionOut]:
    """The meeting's LIVE session; 404 when nobody is in the meeting."""
    meeting = await get_meeting(db, app, meeting_id)
    session = await lifecycle.live_session(db, meeting.id)
    if session is None:
        raise NotFound("meeting has no active session")
    return Envelope(data=session_out(session, meeting))


@router.post("/kick", response_model=Envelope[s.KickResult], summary="Kick participants")
async def kick_participants(
    meeting_id: str,
    body: s.KickRequest,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.KickResult]:
    """Remove the named participants from the live session."""
    meeting = await get_meeting(db, app, meeting_id)
    session = await lifecycle.live_session(db, meeting.id)
    if session is None:
        raise Conflict("meeting has no active session")
    wanted_ids = set(body.participant_ids or ())
    wanted_custom = set(body.custom_participant_ids or ())
    kicked: list[s.KickedParticipant] = []
    seen: set[str] = set()
    for stay in await lifecycle.present_stays(db, session.id):
        if stay.participant_id in wanted_ids or stay.custom_participant_id in wanted_custom:
            await lifecycle.participant_left(db, stay.id)
            if stay.participant_id in seen:
                continue
            seen.add(stay.participant_id)
            p = await db.get(Participant, stay.participant_id)
            kicked.append(
                s.KickedParticipant(
                    id=stay.participant_id,
                    created_at=iso(p.created_at if p else stay.created_at),
                    updated_at=iso(p.updated_at if p else stay.updated_at),
                    name=stay.display_name,
                    picture=p.picture if p else None,
                )
            )
    await db.commit()
    await _notify_media(ctx, app.id, meeting.id, [k.id for k in kicked])
    return Envelope(data=s.KickResult(action="kick", participants=kicked))


@router.post("/kick-all", response_model=Envelope[s.KickAllResult], summary="Kick all participants")
async def kick_all_participants(
    meeting_id: str,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.KickAllResult]:
    """Remove everyone from the live session."""
    meeting = await get_meeting(db, app, meeting_id)
    session = await lifecycle.live_session(db, meeting.id)
    if session is None:
        raise Conflict("meeting has no active session")
    ids = [stay.participant_id for stay in await lifecycle.present_stays(db, session.id)]
    count = await lifecycle.mark_all_left(db, session.id)
    await db.commit()
    await _notify_media(ctx, app.id, meeting.id, ids)
    return Envelope(data=s.KickAllResult(action="kick_all", kicked_participants_count=count))


async def _notify_media(ctx: ServerContext, app_id: str, meeting_id: str, participant_ids: list[str]) -> None:
    """Tell the media plane to disconnect the kicked participants."""
    if participant_ids:
        for hook in ctx.kick_hooks:
            await hook(app_id, meeting_id, participant_ids)


class PollCreate(s._Request):
    """Body of "create poll"."""

    question: s.Name
    options: list[s.Name] = Field(min_length=1, max_length=20)
    anonymous: bool = False
    hide_votes: bool = False


class PollVote(BaseModel):
    """A voter."""

    id: str
    name: str


class PollOption(BaseModel):
    """An option with its votes."""

    text: str
    count: int
    votes: list[PollVote]


class PollOut(BaseModel):
    """A poll, as the SDK's ``active_session_create_poll_response.DataPoll``."""

    id: str
    question: str
    options: list[PollOption]
    anonymous: bool
    hide_votes: bool
    created_by: str | None
    voted: list[str]


class PollCreated(BaseModel):
    """``data`` of "create poll"."""

    action: str = "create"
    poll: PollOut


@router.post("/poll", response_model=Envelope[PollCreated], status_code=201, summary="Create a poll")
async def create_poll(
    meeting_id: str,
    body: PollCreate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[PollCreated]:
    """Ask the participants of the live session a question; they get it over signaling and vote there.

    409 when the meeting has no active session on this server.
    """
    meeting = await get_meeting(db, app, meeting_id)
    live = ctx.media.get(meeting.id)
    if live is None or await lifecycle.live_session(db, meeting.id) is None:
        raise Conflict("meeting has no active session")
    poll = Poll(
        question=body.question,
        options=list(body.options),
        anonymous=body.anonymous,
        hide_votes=body.hide_votes,
        created_by="ORGANIZATION",
    )
    live.room.create_poll(poll)
    return Envelope(data=PollCreated(poll=PollOut.model_validate(poll.to_json())))
