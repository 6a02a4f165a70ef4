"""The ASGI application: app factory, lifespan (database, migrations, keys) and routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape import __version__
from roomtape.api import logs
from roomtape.api.context import ServerContext
from roomtape.api.errors import install_error_handlers
from roomtape.api.limits import BodySizeLimit
from roomtape.api.routers import downloads, hls, signaling, transcripts, web
from roomtape.api.routers.dashboard import router as dashboard_router
from roomtape.api.routers.realtimekit import active_session, analytics, apps, meetings, presets, sessions, webhooks
from roomtape.api.routers.realtimekit.livestreams import router as livestreams_router
from roomtape.api.routers.realtimekit.recordings import router as recordings_router
from roomtape.api.routers.videosdk import ROUTERS as VIDEOSDK_ROUTERS
from roomtape.api.schemas import ErrorResponse
from roomtape.cluster import Placement, make_placement
from roomtape.cluster.hooks import RoomHooks
from roomtape.cluster.placement import node_auth
from roomtape.cluster.proxy import NodeForwarder
from roomtape.cluster.reaper import Reaper
from roomtape.config import Settings
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.migrate import upgrade
from roomtape.domain.secretbox import SecretBox
from roomtape.jobs.runner import make_runner
from roomtape.livestream.engine import LivestreamEngine
from roomtape.livestream.service import LivestreamService
from roomtape.recording.meeting import MeetingRecordings
from roomtape.recording.spool import Shipper
from roomtape.recording.startup import open_recording_service

log = logging.getLogger(__name__)

_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in (
        (400, "Bad input: malformed JSON, wrong types or out-of-range values; nothing was changed"),
        (401, "Missing or invalid API token"),
        (403, "The credential may not do this (e.g. an account-wide token where an app must be named)"),
        (404, "No such object visible to this token"),
        (409, "The object's state does not allow this now"),
        (413, "Request body too large"),
    )
}


async def build_context(settings: Settings) -> ServerContext:
    """Open the database, apply migrations and load the keys."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    await upgrade(engine)
    key = settings.resolved_secret_key()
    return ServerContext(
        settings=settings, engine=engine, sessions=session_factory(engine), secret_key=key, box=SecretBox(key)
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the roomtape ASGI app. The database is opened (and migrated) when the app starts."""
    settings = settings or Settings()
    logs.install()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = await build_context(settings)
        placement = ctx.placement = make_placement(settings)
        jobs = ctx.jobs = make_runner(ctx)
        # Recovery runs before the runner starts; the runner's start() resumes every UPLOADING recording.
        # Scaled, it covers the recordings of nodes that are gone, by one process at a time.
        async with placement.recovery_lock() as recover:
            ctx.recordings = await open_recording_service(
                ctx.media,
                ctx.sessions,
                settings.data_dir,
                uploader=jobs.submit_upload,
                spool=Shipper.from_settings(settings),
                segment_max_seconds=settings.segment_max_seconds,
                recover=recover,
                live_nodes=await placement.live_node_ids(),
                node_id=placement.node_id,
                transcriber=jobs.submit_transcription,
                transcribe_all_meetings=settings.transcribe_all_meetings,
            )
        presence = signaling.start_presence(app, ctx)
        meeting_recordings = MeetingRecordings.install(ctx, ctx.recordings, ctx.media, jobs.submit_upload)
        ctx.meeting_recordings = meeting_recordings
        livestreams = ctx.livestreams = LivestreamEngine(ctx.recordings, ctx.media, settings.data_dir)
        livestream_service = ctx.livestream_service = LivestreamService(
            ctx, livestreams, ctx.media, placement.node_id, jobs.events_committed
        )
        await livestream_service.open(await placement.live_node_ids())
        await jobs.start()
        room_hooks = RoomHooks(placement, ctx.media)
        await placement.start(room_hooks.load)
        reaper = Reaper(
            placement,
            ctx,
            settings.data_dir,
            submit_upload=jobs.submit_upload,
            submit_summary=jobs.submit_summary,
            submit_transcription=jobs.submit_transcription,
            interval=settings.node_ttl_secs / 4,
        )
        reaper.start()
        app.state.ctx = ctx  # last: the forwarder passes requests through until the placement is running
        try:
            yield
        finally:
            await reaper.aclose()
            await livestream_service.aclose()
            await meeting_recordings.aclose()
            await ctx.jobs.stop()
            await presence.aclose()
            await ctx.media.close_all()
            await room_hooks.aclose()
            await placement.aclose()
            await ctx.recordings.aclose()
            await ctx.engine.dispose()

    app = FastAPI(
        title="roomtape",
        version=__version__,
        description="Self-hosted recording for real-time rooms. RealtimeKit-compatible API.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (apps, meetings, presets, active_session, sessions, webhooks, analytics):
        app.include_router(module.router, responses=_ERROR_RESPONSES)
    app.include_router(downloads.router)
    app.include_router(recordings_router, responses=_ERROR_RESPONSES)
    app.include_router(livestreams_router, responses=_ERROR_RESPONSES)
    app.include_router(hls.router)
    for videosdk_router in VIDEOSDK_ROUTERS:
        app.include_router(videosdk_router, responses=_ERROR_RESPONSES)
    app.include_router(transcripts.router, responses=_ERROR_RESPONSES)
    app.include_router(signaling.router, responses=_ERROR_RESPONSES)
    app.include_router(web.router)
    app.include_router(dashboard_router)
    app.mount("/static", web.static_files(), name="static")

    @app.get("/healthz", tags=["health"], summary="Liveness")
    async def healthz() -> dict[str, str]:
        """Answers while the server runs."""
        return {"status": "ok"}

    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    app.add_middleware(NodeForwarder, state=lambda: _forwarding_state(app))
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        # LiveKit Agents' observability upload carries the session's OGG audio.
        upload_prefixes=("/observability/",),
        upload_max_bytes=settings.max_upload_bytes,
    )
    return app


def _forwarding_state(app: FastAPI) -> tuple[Placement, async_sessionmaker[AsyncSession], str] | None:
    """What the forwarder needs, once the lifespan has built it."""
    ctx: ServerContext | None = getattr(app.state, "ctx", None)
    if ctx is None:
        return None
    return ctx.placement, ctx.sessions, node_auth(ctx.secret_key)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """The OpenAPI document: validation errors are 400 here (not FastAPI's 422), and auth is Bearer."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http",
        "scheme": "bearer",
    }
    for path, item in schema.get("paths", {}).items():
        for op in item.values():
            responses = op.get("responses", {})
            responses.pop("422", None)
            if path != "/healthz":
                op["security"] = [{"bearer": []}]
    for name in ("HTTPValidationError", "ValidationError"):
        schema["components"].get("schemas", {}).pop(name, None)
    app.openapi_schema = schema
    return schema
