"""The ASGI application: app factory, lifespan (database, migrations, keys) and routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from roomtape import __version__
from roomtape.api import logs
from roomtape.api.context import ServerContext
from roomtape.api.errors import install_error_handlers
from roomtape.api.limits import BodySizeLimit
from roomtape.api.routers import downloads, signaling, transcripts, web
from roomtape.api.routers.dashboard import router as dashboard_router
from roomtape.api.routers.realtimekit import active_session, analytics, apps, meetings, presets, sessions, webhooks
from roomtape.api.routers.realtimekit.recordings import router as recordings_router
from roomtape.api.routers.videosdk import ROUTERS as VIDEOSDK_ROUTERS
from roomtape.api.schemas import ErrorResponse
from roomtape.config import Settings
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.migrate import upgrade
from roomtape.domain.secretbox import SecretBox
from roomtape.jobs.runner import make_runner
from roomtape.recording.meeting import MeetingRecordings
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
        app.state.ctx = ctx
        jobs = ctx.jobs = make_runner(ctx)
        # Recovery runs before the runner starts; the runner's start() resumes every UPLOADING recording.
        ctx.recordings = await open_recording_service(
            ctx.media, ctx.sessions, settings.data_dir, uploader=jobs.submit_upload
        )
        presence = signaling.start_presence(app, ctx)
        meeting_recordings = MeetingRecordings.install(ctx, ctx.recordings, ctx.media, jobs.submit_upload)
        ctx.meeting_recordings = meeting_recordings
        await jobs.start()
        try:
            yield
        finally:
            await meeting_recordings.aclose()
            await ctx.jobs.stop()
            await presence.aclose()
            await ctx.media.close_all()
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
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_body_bytes,
        # LiveKit Agents' observability upload carries the session's OGG audio.
        upload_prefixes=("/observability/",),
        upload_max_bytes=settings.max_upload_bytes,
    )
    return app


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
