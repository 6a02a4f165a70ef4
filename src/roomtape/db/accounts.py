"""Accounts, apps and API tokens: creation and lookup shared by the CLI and the API."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Account, ApiToken, App
from roomtape.db.presets import add_default_presets
from roomtape.domain.secretbox import SecretBox
from roomtape.domain.tokens import hash_api_token, new_api_token


@dataclass(frozen=True, slots=True)
class Credentials:
    """What ``roomtape apps create`` prints: the token is shown this once and kept only hashed."""

    account_id: str
    app_id: str
    api_token: str
    api_secret: str | None = None
    """Signs VideoSDK-style JWTs whose ``apikey`` is ``app_id``; shown once, stored sealed."""


def new_api_secret() -> str:
    """Return a new random app secret (256 bits)."""
    return secrets.token_urlsafe(32)


def set_api_secret(app: App, box: SecretBox) -> str:
    """Give ``app`` a new API secret, stored sealed, and return it in clear. The caller commits."""
    secret = new_api_secret()
    app.api_secret = box.seal(secret)
    return secret


async def create_app(db: AsyncSession, account_id: str, name: str) -> App:
    """Create an app in an existing account, with the default presets. The caller commits."""
    app = App(account_id=account_id, name=name)
    db.add(app)
    await db.flush()
    add_default_presets(db, app.id)
    await db.flush()
    return app


async def issue_token(db: AsyncSession, account_id: str, name: str = "") -> str:
    """Create an API token for the account and return it (only its hash is stored). The caller commits."""
    token = new_api_token()
    db.add(ApiToken(account_id=account_id, token_hash=hash_api_token(token), name=name))
    await db.flush()
    return token


async def create_app_with_account(
    db: AsyncSession, name: str, account_id: str | None = None, box: SecretBox | None = None
) -> Credentials:
    """Create an app, in a new account unless ``account_id`` names an existing one, plus an API token.

    With ``box`` the app also gets an API secret (for VideoSDK-style JWTs). The caller commits.

    Raises:
        LookupError: ``account_id`` names no account.
    """
    if account_id is None:
        account = Account()
        db.add(account)
        await db.flush()
        account_id = account.id
    elif await db.get(Account, account_id) is None:
        raise LookupError(f"no account {account_id}")
    app = await create_app(db, account_id, name)
    secret = set_api_secret(app, box) if box is not None else None
    token = await issue_token(db, account_id, name)
    return Credentials(account_id=account_id, app_id=app.id, api_token=token, api_secret=secret)


async def token_account(db: AsyncSession, token: str) -> str | None:
    """The account of the API token ``token`` (looked up by its hash); None for an unknown token."""
    return await db.scalar(select(ApiToken.account_id).where(ApiToken.token_hash == hash_api_token(token)))


async def list_account_apps(
    db: AsyncSession, account_id: str, *, search: str | None, ascending: bool, offset: int, limit: int
) -> tuple[list[App], int]:
    """One page of the account's apps by creation time, and how many there are.

    Args:
        db: The database session.
        account_id: Whose apps.
        search: Only apps whose name contains it or whose id it is.
        ascending: Oldest first (else newest first).
        offset: Rows before the page.
        limit: Rows in the page.
    """
    where = [App.account_id == account_id]
    if search:
        where.append(App.name.contains(search, autoescape=True) | (App.id == search))
    total = int(await db.scalar(select(func.count()).select_from(App).where(*where)) or 0)
    order = App.created_at.asc() if ascending else App.created_at.desc()
    rows = await db.scalars(select(App).where(*where).order_by(order, App.id).offset(offset).limit(limit))
    return list(rows.all()), total


async def count_apps(db: AsyncSession) -> int:
    """How many apps exist in the whole database."""
    return int(await db.scalar(select(func.count()).select_from(App)) or 0)
