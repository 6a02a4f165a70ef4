"""VideoSDK rooms: create, list, fetch, validate, deactivate.

``POST /v2/rooms`` (create, idempotent on ``customRoomId``), ``GET /v2/rooms``, ``GET /v2/rooms/{roomId}``,
``GET /v2/rooms/validate/{roomId}`` and ``POST /v2/rooms/deactivate``.

A room is a meeting: its ``roomId`` is the meeting id, so it works wherever a meeting id does (the join page,
the RealtimeKit API, ``/v2/recordings/participant/track/start``). Deactivating sets the meeting ``INACTIVE``:
it refuses new joins, as RealtimeKit's ``status: INACTIVE`` does.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response
from pydantic import BaseModel, ConfigDict, StringConstraints
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
from roomtape.db.models import App, Meeting
from roomtape.db.videosdk import Page, VideoSdkCaller, app_for_new_room, create_room, list_rooms

router = APIRouter(prefix="/v2/rooms", tags=["videosdk"])

RoomId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
RoomPath = Annotated[str, Path(min_length=1, max_length=255, pattern=NO_NUL)]


class RoomCreate(BaseModel):
    """Body of ``POST /v2/rooms`` (every field optional).

    ``autoStartConfig.recording`` turns on recording when the session starts (the meeting's
    ``record_on_start``); ``webhook``, ``autoCloseConfig``, ``geoFence`` and other VideoSDK options are accepted
    and not used (roomtape's webhooks are registered per app).
    """

    model_config = ConfigDict(extra="ignore")

    customRoomId: RoomId | None = None
    """Your own id for the room, unique per app: creating it again returns the existing room."""
    autoStartConfig: dict[str, Any] | None = None
    webhook: dict[str, Any] | None = None
    autoCloseConfig: dict[str, Any] | None = None


class RoomDeactivate(BaseModel):
    """Body of ``POST /v2/rooms/deactivate``."""

    model_config = ConfigDict(extra="ignore")

    roomId: RoomId


class RoomOut(BaseModel):
    """A room in VideoSDK's shape."""

    roomId: str
    customRoomId: str | None
    userId: str
    """The account that owns the room."""
    disabled: bool
    createdAt: str | None
    updatedAt: str | None
    id: str
    links: Links


class RoomList(BaseModel):
    """``GET /v2/rooms``."""

    pageInfo: PageInfo
    data: list[RoomOut]


async def _out(request: Request, db: AsyncSession, meeting: Meeting) -> RoomOut:
    app = await db.get(App, meeting.app_id)
    return RoomOut(
        roomId=meeting.id,
        customRoomId=meeting.custom_room_id,
        userId=app.account_id if app is not None else "",
        disabled=meeting.status == "INACTIVE",
        createdAt=iso_z(meeting.created_at),
        updatedAt=iso_z(meeting.updated_at),
        id=meeting.id,
        links=links(request, meeting.id),
    )


@router.post(
    "",
    response_model=RoomOut,
    status_code=201,
    summary="Create a room",
    responses={200: {"model": RoomOut, "description": "The app's existing room with this customRoomId"}},
)
async def create_a_room(
    request: Request,
    response: Response,
    body: RoomCreate | None = None,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> RoomOut:
    """Create a room in the JWT's app (or the API token's account's only app).

    With a ``customRoomId`` the app already has, answers that room (200) instead of creating another; a new
    room answers 201.
    """
    body = body or RoomCreate()
    app_id = await app_for_new_room(db, caller)
    record = bool((body.autoStartConfig or {}).get("recording"))
    meeting, created = await create_room(db, app_id, body.customRoomId, record_on_start=record)
    await db.commit()
    response.status_code = 201 if created else 200
    return await _out(request, db, meeting)


@router.get("", response_model=RoomList, summary="Fetch rooms")
async def fetch_rooms(
    request: Request,
    page: Page = Depends(paging),
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> RoomList:
    """The caller's rooms, newest first."""
    rows, total = await list_rooms(db, caller, page)
    return RoomList(pageInfo=page_info(page, total), data=[await _out(request, db, m) for m in rows])


@router.get("/validate/{roomId}", response_model=RoomOut, summary="Validate a room")
async def validate_room(
    roomId: RoomPath,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> RoomOut:
    """The room if it is the caller's (by ``roomId`` or ``customRoomId``), else 404."""
    return await _out(request, db, await room_of(db, caller, roomId))


@router.post("/deactivate", response_model=RoomOut, summary="Deactivate a room")
async def deactivate_room(
    body: RoomDeactivate,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> RoomOut:
    """Disable the room: it refuses new joins (participants already in stay until they leave)."""
    meeting = await room_of(db, caller, body.roomId)
    meeting.status = "INACTIVE"
    await db.commit()
    return await _out(request, db, meeting)


@router.get("/{roomId}", response_model=RoomOut, summary="Fetch a room")
async def fetch_room(
    roomId: RoomPath,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> RoomOut:
    """One room by its ``roomId`` or ``customRoomId``."""
    return await _out(request, db, await room_of(db, caller, roomId))
