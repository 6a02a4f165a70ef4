"""What the VideoSDK-compatible routers share: the caller's authentication, paging and links.

The ``Authorization`` header (``Bearer`` optional, as VideoSDK sends the bare token) carries either

- a roomtape API token (``rt_…``), which reaches every app of its account, or
- a VideoSDK-style JWT signed with HS256 by an app's API secret, with claim ``apikey`` = the app id (what
  ``roomtape apps create`` prints as ``app_id`` and ``api_secret``); it reaches that app only.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import jwt
from fastapi import Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import bearer_token
from roomtape.api.context import get_context, get_db
from roomtape.db.accounts import token_account
from roomtape.db.models import App, Meeting
from roomtape.db.videosdk import Page, VideoSdkCaller, find_room
from roomtape.domain.tokens import looks_like_jwt
from roomtape.errors import NotFound, RoomtapeError, Unauthenticated


async def videosdk_caller(request: Request, db: AsyncSession = Depends(get_db)) -> VideoSdkCaller:
    """Authenticate an API token or an app JWT carrying ``apikey``.

    Raises:
        Unauthenticated: Missing, unknown, forged or expired credentials.
    """
    token = bearer_token(request)
    if not looks_like_jwt(token):
        account_id = await token_account(db, token)
        if account_id is None:
            raise Unauthenticated("invalid API token")
        return VideoSdkCaller(account_id=account_id, app_id=None)
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Unauthenticated("token is not a valid JWT") from exc
    apikey = unverified.get("apikey")
    if not isinstance(apikey, str) or not apikey:
        raise Unauthenticated("token has no apikey claim: sign a JWT with claim apikey = app id")
    app = await db.get(App, apikey)
    if app is None or not app.api_secret:
        raise Unauthenticated("invalid token")
    try:
        secret = get_context(request).box.open(app.api_secret)
    except RoomtapeError as exc:
        raise Unauthenticated("invalid token") from exc
    try:
        jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("invalid token signature") from exc
    return VideoSdkCaller(account_id=app.account_id, app_id=app.id)


async def room_of(db: AsyncSession, caller: VideoSdkCaller, room_id: str) -> Meeting:
    """The caller's room named by its ``roomId`` or ``customRoomId``.

    Raises:
        NotFound: no such room for this caller (another account's room is not found either).
    """
    meeting = await find_room(db, caller, room_id)
    if meeting is None:
        raise NotFound(f"room {room_id} not found")
    return meeting


def paging(
    page: int = Query(1, ge=1, le=1_000_000, description="1-based page number"),
    perPage: int = Query(20, ge=1, le=100, description="Items per page"),
) -> Page:
    """``page`` and ``perPage`` query parameters."""
    return Page(page=page, per_page=perPage)


class PageInfo(BaseModel):
    """VideoSDK's ``pageInfo``."""

    currentPage: int
    perPage: int
    lastPage: int
    total: int


def page_info(page: Page, total: int) -> PageInfo:
    """``pageInfo`` for ``total`` rows in pages of ``page.per_page``."""
    return PageInfo(
        currentPage=page.page, perPage=page.per_page, lastPage=max(1, math.ceil(total / page.per_page)), total=total
    )


class Links(BaseModel):
    """VideoSDK's convenience links."""

    get_room: str
    get_session: str


def links(request: Request, room_id: str, session_id: str | None = None) -> Links:
    """Links to the room and (its list of) sessions, on this server's public URL."""
    base = get_context(request).settings.resolved_public_url.rstrip("/")
    return Links(get_room=f"{base}/v2/rooms/{room_id}", get_session=f"{base}/v2/sessions/{session_id or ''}")


def iso_z(value: datetime | None) -> str | None:
    """VideoSDK's timestamps: ISO 8601 UTC with milliseconds and ``Z``."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"
