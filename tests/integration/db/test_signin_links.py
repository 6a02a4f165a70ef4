"""One-time sign-in links on a real database (SQLite and PostgreSQL): used once, not after expiry."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from roomtape.db.accounts import create_app_with_account
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.migrate import upgrade
from roomtape.db.models import SigninLink, utcnow
from roomtape.db.signin_links import SigninLinkRefused, create_signin_link, redeem_signin_link, signin_url
from roomtape.domain.secretbox import SecretBox

BOX = SecretBox("test-secret-key")


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = (
        f"sqlite+aiosqlite:///{tmp_path / 'links.db'}"
        if request.param == "sqlite"
        else str(request.getfixturevalue("pg_database_url"))
    )
    eng = create_engine(url)
    await upgrade(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


async def new_link(engine: AsyncEngine, ttl_secs: int = 900) -> tuple[str, str, str]:
    async with session_factory(engine)() as db:
        creds = await create_app_with_account(db, "links")
        secret = await create_signin_link(db, BOX, app_id=creds.app_id, api_token=creds.api_token, ttl_secs=ttl_secs)
        await db.commit()
    return secret, creds.api_token, creds.app_id


async def redeem(engine: AsyncEngine, secret: str, **kw: object) -> tuple[str, str]:
    async with session_factory(engine)() as db:
        return await redeem_signin_link(db, BOX, secret, **kw)  # type: ignore[arg-type]


async def test_a_link_signs_in_once(engine: AsyncEngine) -> None:
    secret, token, app_id = await new_link(engine)
    assert await redeem(engine, secret) == (token, app_id)
    with pytest.raises(SigninLinkRefused) as used:
        await redeem(engine, secret)
    assert used.value.reason == "used" and "already been used" in used.value.message
    # Only the secret's hash and the sealed token are stored.
    async with session_factory(engine)() as db:
        row = (await db.scalars(select(SigninLink).where(SigninLink.app_id == app_id))).one()
    assert secret not in (row.token_hash, row.api_token_sealed) and token not in row.api_token_sealed
    assert row.used_at is not None


async def test_two_browsers_racing_with_one_link_get_one_session(engine: AsyncEngine) -> None:
    secret, token, app_id = await new_link(engine)
    results = await asyncio.gather(*(redeem(engine, secret) for _ in range(4)), return_exceptions=True)
    wins = [r for r in results if not isinstance(r, BaseException)]
    assert wins == [(token, app_id)], results
    assert all(isinstance(r, SigninLinkRefused) and r.reason == "used" for r in results if r not in wins)


async def test_expired_and_unknown_links_are_refused_and_stay_unused(engine: AsyncEngine) -> None:
    secret, token, app_id = await new_link(engine, ttl_secs=60)
    with pytest.raises(SigninLinkRefused) as expired:
        await redeem(engine, secret, now=utcnow() + timedelta(seconds=61))
    assert expired.value.reason == "expired"
    for bad in ("", "x" * 500, "not-a-link", secret[:-1]):
        with pytest.raises(SigninLinkRefused) as unknown:
            await redeem(engine, bad)
        assert unknown.value.reason == "unknown"
    async with session_factory(engine)() as db:
        assert (await db.scalars(select(SigninLink).where(SigninLink.app_id == app_id))).one().used_at is None
    # Still good before it expires: the refusals changed nothing.
    assert (await redeem(engine, secret))[0] == token


def test_the_secret_is_in_the_fragment() -> None:
    url = signin_url("http://127.0.0.1:8080/", "s3cr3t")
    assert url == "http://127.0.0.1:8080/dashboard/signin/link#s3cr3t"
