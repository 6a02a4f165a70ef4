"""One-time dashboard sign-in links: made by ``roomtape serve`` (and ``roomtape signin-link``), used once.

A link carries a random secret (256 bits) in its URL fragment; the database keeps only the secret's SHA-256,
the app, when the link expires and when it was used. Redeeming is one conditional ``UPDATE`` (unused and not
expired), so two browsers racing with the same link cannot both get a session.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import SigninLink, utcnow
from roomtape.domain.secretbox import SecretBox
from roomtape.errors import RoomtapeError

__all__ = [
    "DEFAULT_TTL_SECS",
    "SIGNIN_LINK_PATH",
    "RefusalReason",
    "SigninLinkRefused",
    "create_signin_link",
    "redeem_signin_link",
    "signin_url",
]

DEFAULT_TTL_SECS = 15 * 60
"""A sign-in link is good for this long unless configured otherwise."""
SIGNIN_LINK_PATH = "/dashboard/signin/link"
"""Where a sign-in link points; the secret follows in the fragment (``#…``), which browsers never send."""
_MAX_SECRET_CHARS = 128

RefusalReason = Literal["unknown", "expired", "used"]


class SigninLinkRefused(RoomtapeError):
    """The link cannot sign anyone in: ``reason`` says whether it is unknown, expired or already used."""

    def __init__(self, reason: RefusalReason) -> None:
        messages = {
            "unknown": "This sign-in link is not valid here (it is incomplete, or from another server).",
            "expired": "This sign-in link has expired.",
            "used": "This sign-in link has already been used: each link signs in once.",
        }
        super().__init__(messages[reason])
        self.reason: RefusalReason = reason


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def signin_url(public_url: str, secret: str) -> str:
    """The URL to print: the sign-in page with the secret in the fragment (kept out of every access log)."""
    return f"{public_url.rstrip('/')}{SIGNIN_LINK_PATH}#{secret}"


async def create_signin_link(
    db: AsyncSession, box: SecretBox, *, app_id: str, api_token: str, ttl_secs: int = DEFAULT_TTL_SECS
) -> str:
    """Store a new link that signs in to ``app_id`` with ``api_token``; return its secret. The caller commits."""
    secret = secrets.token_urlsafe(32)
    db.add(
        SigninLink(
            app_id=app_id,
            token_hash=_hash(secret),
            api_token_sealed=box.seal(api_token),
            expires_at=utcnow() + timedelta(seconds=ttl_secs),
        )
    )
    await db.flush()
    return secret


async def redeem_signin_link(
    db: AsyncSession, box: SecretBox, secret: str, *, now: datetime | None = None
) -> tuple[str, str]:
    """Use the link up and return ``(api_token, app_id)`` to sign in with. Commits.

    Raises:
        SigninLinkRefused: unknown secret, expired link, or a link used before (nothing changes then).
    """
    now = now or utcnow()
    if not secret or len(secret) > _MAX_SECRET_CHARS:
        raise SigninLinkRefused("unknown")
    digest = _hash(secret)
    claimed = await db.execute(
        update(SigninLink)
        .where(SigninLink.token_hash == digest, SigninLink.used_at.is_(None), SigninLink.expires_at > now)
        .values(used_at=now)
        .returning(SigninLink.api_token_sealed, SigninLink.app_id)
    )
    row = claimed.one_or_none()
    if row is None:
        await db.rollback()
        link = await db.scalar(select(SigninLink).where(SigninLink.token_hash == digest))
        if link is None:
            raise SigninLinkRefused("unknown")
        raise SigninLinkRefused("used" if link.used_at is not None else "expired")
    await db.commit()
    return box.open(row[0]), row[1]
