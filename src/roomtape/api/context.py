"""What every request handler needs: settings, database, keys. Built once in the app's lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from roomtape.cluster.placement import LocalPlacement, Placement
from roomtape.config import Settings
from roomtape.domain.secretbox import SecretBox
from roomtape.jobs.runner import JobRunner
from roomtape.livestream.engine import LivestreamEngine
from roomtape.livestream.service import LivestreamService
from roomtape.media.plane import MediaPlane
from roomtape.recording.meeting import MeetingRecordings
from roomtape.recording.service import RecordingService

KickHook = Callable[[str, str, list[str]], Awaitable[None]]


@dataclass
class ServerContext:
    """Process-wide state of one roomtape server."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    secret_key: str
    box: SecretBox
    media: MediaPlane = field(default_factory=MediaPlane)
    """Live rooms of this process."""
    recordings: RecordingService | None = None
    """Track recordings of live rooms; set in the app's lifespan."""
    kick_hooks: list[KickHook] = field(default_factory=list)
    """Called after participants were kicked (app id, meeting id, participant ids): the media plane
    registers one to disconnect them."""
    jobs: JobRunner | None = None
    """Uploads and webhook delivery (``roomtape.jobs``): in-process, or queued for ``roomtape worker``."""
    meeting_recordings: MeetingRecordings | None = None
    """Composite (meeting) recordings; set in the app's lifespan."""
    livestreams: LivestreamEngine | None = None
    """Live streams (HLS, RTMP push) of this process's rooms (``roomtape.livestream.engine``); set in the app's
    lifespan."""
    livestream_service: LivestreamService | None = None
    """RealtimeKit livestreams (rows, statuses, webhooks, playback URLs) over the engine; set in the app's
    lifespan."""
    placement: Placement = field(default_factory=LocalPlacement)
    """Which node holds which room (``roomtape.cluster``): this process alone, or the Redis registry."""


def get_context(request: Request) -> ServerContext:
    """The server context of the app handling ``request``."""
    ctx: ServerContext = request.app.state.ctx
    return ctx


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    """A database session for one request; the handler commits what it changes."""
    async with get_context(request).sessions() as session:
        yield session
