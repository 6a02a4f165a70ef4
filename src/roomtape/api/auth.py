"""Authentication of the admin API: ``Authorization: Bearer <api token>``.

API tokens belong to an account; every object lives under one of the account's apps. A path naming an
account or app the token does not own answers 404 with no data, exactly as an id that does not exist.
Participant join tokens (JWTs) are refused here: they are for joining meetings only.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.context import get_db
from roomtape.db.accounts import token_account
from roomtape.db.models import App
from roomtape.domain.tokens import looks_like_jwt
from roomtape.errors import NotFound, Unauthenticated


@dataclass(frozen=True, slots=True)
class Caller:
    """The account an API request acts for."""

    account_id: str


def bearer_token(request: Request) -> str:
    """The token of the ``Authorization`` header (``Bearer`` prefix optional)."""
    header = request.headers.get("authorization", "").strip()
    if not header:
        raise Unauthenticated("missing Authorization header")
    scheme, _, rest = header.partition(" ")
    token = rest.strip() if scheme.lower() == "bearer" else header
    if not token:
        raise Unauthenticated("missing API token")
    return token


async def get_caller(request: Request, db: AsyncSession = Depends(get_db)) -> Caller:
    """Resolve the API token to its account, or fail with 401."""
    token = bearer_token(request)
    if looks_like_jwt(token):
        raise Unauthenticated("participant tokens cannot be used on the admin API; use an API token")
    account_id = await token_account(db, token)
    if account_id is None:
        raise Unauthenticated("invalid API token")
    return Caller(account_id=account_id)


async def account_of(account_id: str, caller: Caller = Depends(get_caller)) -> Caller:
    """Check the path's ``account_id`` is the caller's."""
    if account_id != caller.account_id:
        raise NotFound("account not found")
    return caller


async def app_of(
    account_id: str, app_id: str, caller: Caller = Depends(get_caller), db: AsyncSession = Depends(get_db)
) -> App:
    """The path's app, if the caller's account owns it."""
    if account_id != caller.account_id:
        raise NotFound("account not found")
    app = await db.get(App, app_id)
    if app is None or app.account_id != caller.account_id:
        raise NotFound("app not found")
    return app
