"""Apply Alembic migrations to the configured database (at start-up and by ``roomtape migrate``)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str = "") -> Config:
    """An Alembic config pointing at roomtape's migration scripts."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "heads") -> None:
    """Bring the database schema up to ``revision`` (default: every head, so parallel branches apply)."""

    def _run(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    async with engine.begin() as conn:
        await conn.run_sync(_run)


async def current_revision(engine: AsyncEngine) -> str | None:
    """The revision(s) the database is at (comma-separated if on several heads), or ``None`` before any."""
    from alembic.runtime.migration import MigrationContext

    def _get(connection: Connection) -> str | None:
        heads = MigrationContext.configure(connection).get_current_heads()
        return ", ".join(sorted(heads)) or None

    async with engine.connect() as conn:
        return await conn.run_sync(_get)
