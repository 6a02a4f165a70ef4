"""VideoSDK sessions: list and fetch, each with its participants and their join/leave ``timelog``.

``GET /v2/sessions`` (``roomId``, ``customRoomId``, ``status``, paging) and ``GET /v2/sessions/{sessionId}``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.context import get_db
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.routers.videosdk.common import (
    Links,
    PageInfo,
    iso_z,
    links,
    page_info,
    paging,
    room_of,
    videosdk_caller,
)
from roomtape.db.models import Meeting, Session, SessionParticipant
from roomtape.db.videosdk import Page, VideoSdkCaller, find_session, list_sessions, session_stays
from roomtape.errors import NotFound

router = APIRouter(prefix="/v2/sessions", tags=["videosdk"])

QueryId = Annotated[str | None, Query(max_length=255, pattern=NO_NUL)]


class Timelog(BaseModel):
    """One stay of a participant in the session."""

    start: str | None
    end: str | None
    """Null while the participant is still in."""


class SessionParticipantOut(BaseModel):
    """A participant of a session, with every stay (a rejoin adds one)."""

    participantId: str
    """The custom participant id the app gave (VideoSDK's participantId)."""
    name: str | None
    timelog: list[Timelog]


class SessionOut(BaseModel):
    """A session in VideoSDK's shape."""

    id: str
    roomId: str
    customRoomId: str | None
    start: str | None
    end: str | None
    status: Literal["ongoing", "ended"]
    participants: list[SessionParticipantOut]
    links: Links


class SessionList(BaseModel):
    """``GET /v2/sessions``."""

    pageInfo: PageInfo
    data: list[SessionOut]


def _out(request: Request, sess: Session, meeting: Meeting, stays: list[SessionParticipant]) -> SessionOut:
    by_participant: dict[str, SessionParticipantOut] = {}
    for stay in stays:
        p = by_participant.setdefault(
            stay.participant_id,
            SessionParticipantOut(participantId=stay.custom_participant_id, name=stay.display_name, timelog=[]),
        )
        p.timelog.append(Timelog(start=iso_z(stay.joined_at), end=iso_z(stay.left_at)))
    return SessionOut(
        id=sess.id,
        roomId=meeting.id,
        customRoomId=meeting.custom_room_id,
        start=iso_z(sess.started_at),
        end=iso_z(sess.ended_at),
        status="ended" if sess.status == "ENDED" else "ongoing",
        participants=list(by_participant.values()),
        links=links(request, meeting.id, sess.id),
    )


@router.get("", response_model=SessionList, summary="Fetch sessions")
async def fetch_sessions(
    request: Request,
    roomId: QueryId = None,
    customRoomId: QueryId = None,
    status: Literal["ongoing", "ended"] | None = None,
    page: Page = Depends(paging),
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> SessionList:
    """The caller's sessions, newest first, optionally of one room (``roomId`` or ``customRoomId``)."""
    meeting_ids = None
    if roomId or customRoomId:
        meeting_ids = [(await room_of(db, caller, str(roomId or customRoomId))).id]
    rows, total = await list_sessions(db, caller, meeting_ids, status, page)
    stays = await session_stays(db, [sess.id for sess, _ in rows])
    return SessionList(
        pageInfo=page_info(page, total), data=[_out(request, sess, m, stays[sess.id]) for sess, m in rows]
    )


@router.get("/{sessionId}", response_model=SessionOut, summary="Fetch a session")
async def fetch_session(
    sessionId: Annotated[str, Path(min_length=1, max_length=255, pattern=NO_NUL)],
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> SessionOut:
    """One session with its participants."""
    found = await find_session(db, caller, sessionId)
    if found is None:
        raise NotFound(f"session {sessionId} not found")
    sess, meeting = found
    return _out(request, sess, meeting, (await session_stays(db, [sess.id]))[sess.id])
