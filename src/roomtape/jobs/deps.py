"""What a job needs: settings, the database, the server's keys. ``ServerContext`` satisfies it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from roomtape.config import Settings
from roomtape.domain.secretbox import SecretBox


class JobDeps(Protocol):
    """The parts of the server context a job uses (so workers need no web app)."""

    settings: Settings
    sessions: async_sessionmaker[AsyncSession]
    secret_key: str
    box: SecretBox


@dataclass
class WorkerDeps:
    """A :class:`JobDeps` built outside the web app (``roomtape worker``, the CLI)."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secret_key: str
    box: SecretBox


async def open_deps(settings: Settings) -> WorkerDeps:
    """Open the database (migrating it) and load the keys."""
    from roomtape.db.engine import create_engine, session_factory
    from roomtape.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    await upgrade(engine)
    key = settings.resolved_secret_key()
    return WorkerDeps(settings, engine, session_factory(engine), key, SecretBox(key))
