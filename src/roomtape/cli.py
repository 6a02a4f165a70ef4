"""The ``roomtape`` command: ``serve``, ``signin-link``, ``migrate``, ``apps create|list``, jobs and repairs."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from roomtape import __version__
from roomtape.config import Settings, load_settings

DEMO_CREDENTIALS_FILE = "demo-credentials.json"

_data_dir = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (SQLite file, secret key, local recordings). Env: ROOMTAPE_DATA_DIR. [default: ./data]",
)
_database_url = click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy async URL, e.g. postgresql+asyncpg://user@host/db. Env: ROOMTAPE_DATABASE_URL.",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="roomtape")
def main() -> None:
    """roomtape: self-hosted recording for real-time rooms."""


@main.command()
@click.option("--host", default=None, help="Interface to bind. Env: ROOMTAPE_HOST. [default: 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port to listen on. Env: ROOMTAPE_PORT. [default: 8080]")
@_data_dir
@_database_url
@click.option("--demo/--no-demo", default=True, help="Create a demo app on first start and print its credentials.")
@click.option(
    "--role",
    type=click.Choice(["all", "api", "media"]),
    default=None,
    help="all: API and rooms here; api: API and signaling entry; media: holds rooms. Env: ROOMTAPE_ROLE. "
    "[default: all]",
)
@click.option(
    "--media-workers",
    type=click.IntRange(0, 256),
    default=None,
    help="Also spawn N media processes on this host (ports PORT+1..PORT+N); this process is their api node. "
    "Needs ROOMTAPE_CLUSTER_URL. Env: ROOMTAPE_MEDIA_WORKERS. [default: 0]",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    database_url: str | None,
    demo: bool,
    role: str | None,
    media_workers: int | None,
) -> None:
    """Run the roomtape server (API, media, jobs) in this process, or one role of a scaled deployment."""
    import uvicorn

    from roomtape.api.app import create_app
    from roomtape.cluster.supervisor import MediaWorkers

    settings = load_settings(
        host=host, port=port, data_dir=data_dir, database_url=database_url, role=role, media_workers=media_workers
    )
    if settings.media_workers:
        settings = settings.model_copy(update={"role": "api"})
    if settings.role != "all" and not settings.cluster_url:
        raise click.ClickException(
            f"--role {settings.role} (or --media-workers) needs the node registry: set "
            "ROOMTAPE_CLUSTER_URL=redis://host:6379/0"
        )
    creds, link = asyncio.run(_prepare(settings, demo))
    if creds is not None:
        click.echo(
            "roomtape: created a demo app (its credentials are also kept, readable only by you, in "
            f"{settings.data_dir / DEMO_CREDENTIALS_FILE}):"
        )
        click.echo(json.dumps(creds, indent=2))
    elif demo and (settings.data_dir / DEMO_CREDENTIALS_FILE).is_file():
        click.echo(f"roomtape: demo app credentials are in {settings.data_dir / DEMO_CREDENTIALS_FILE}")
    if link is not None:
        terms = _link_terms(settings.signin_link_ttl_secs)
        click.echo(f"roomtape: open the dashboard with this sign-in link ({terms}):")
        click.echo(f"  {link}")
    click.echo(
        f"roomtape: serving on {settings.resolved_public_url} as {settings.role} (database: {_safe_url(settings)})"
    )
    sys.stdout.flush()
    with MediaWorkers(settings, settings.media_workers) as workers:
        for url in workers.urls:
            click.echo(f"roomtape: media process at {url}")
        sys.stdout.flush()
        uvicorn.run(
            create_app(settings), host=settings.host, port=settings.port, log_level="info", log_config=_log_config()
        )


def _log_config() -> dict[str, Any]:
    """Uvicorn's logging set-up plus roomtape's own loggers at INFO (sessions, leaves, repairs, failures)."""
    import copy

    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["roomtape"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config


def _link_terms(ttl_secs: int) -> str:
    """How long and how often a sign-in link works, for people."""
    span = f"{ttl_secs // 60} minutes" if ttl_secs % 60 == 0 else f"{ttl_secs} seconds"
    return f"works once, for {span}; `roomtape signin-link` makes another"


async def _prepare(settings: Settings, demo: bool) -> tuple[dict[str, str] | None, str | None]:
    """Migrate; on an empty database create the demo app and keep its credentials in the data dir.

    Returns the new demo credentials (first start only) and, with the demo on, a one-time sign-in link.
    """
    from roomtape.db.accounts import count_apps, create_app_with_account
    from roomtape.db.engine import create_engine, session_factory
    from roomtape.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.resolved_secret_key()
    engine = create_engine(settings.resolved_database_url)
    out: dict[str, str] | None = None
    try:
        await upgrade(engine)
        if not demo:
            return None, None
        async with session_factory(engine)() as db:
            if not await count_apps(db):
                creds = await create_app_with_account(db, "demo")
                await db.commit()
                out = {"account_id": creds.account_id, "app_id": creds.app_id, "api_token": creds.api_token}
                path = settings.data_dir / DEMO_CREDENTIALS_FILE
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as f:
                    json.dump(out, f, indent=2)
        link = await _demo_signin_link(settings, engine, settings.signin_link_ttl_secs)
    finally:
        await engine.dispose()
    return out, link


async def _demo_signin_link(settings: Settings, engine: Any, ttl_secs: int) -> str | None:
    """A new one-time sign-in link for the demo app, or None when there is no demo app (credentials file)."""
    from roomtape.db.engine import session_factory
    from roomtape.db.models import App
    from roomtape.db.signin_links import create_signin_link, signin_url
    from roomtape.domain.secretbox import SecretBox

    path = settings.data_dir / DEMO_CREDENTIALS_FILE
    try:
        creds = json.loads(path.read_text())
        app_id, api_token = str(creds["app_id"]), str(creds["api_token"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    async with session_factory(engine)() as db:
        if await db.get(App, app_id) is None:  # a credentials file left from another database
            return None
        box = SecretBox(settings.resolved_secret_key())
        secret = await create_signin_link(db, box, app_id=app_id, api_token=api_token, ttl_secs=ttl_secs)
        await db.commit()
    return signin_url(settings.resolved_public_url, secret)


def _safe_url(settings: Settings) -> str:
    """The database URL without a password, for logs."""
    from sqlalchemy.engine import make_url

    return make_url(settings.resolved_database_url).render_as_string(hide_password=True)


@main.command("signin-link")
@click.option(
    "--ttl",
    type=click.IntRange(1, 24 * 3600),
    default=None,
    help="Seconds the link works. Env: ROOMTAPE_SIGNIN_LINK_TTL_SECS. [default: 900]",
)
@_data_dir
@_database_url
def signin_link(ttl: int | None, data_dir: Path | None, database_url: str | None) -> None:
    """Print a new one-time sign-in link to the dashboard for the demo app.

    The link works once, for a short time; its secret is in the URL fragment, so it never reaches an
    access log. The URL's base is ROOMTAPE_PUBLIC_URL (or http://ROOMTAPE_HOST:ROOMTAPE_PORT).
    """
    from roomtape.db.engine import create_engine
    from roomtape.db.migrate import upgrade

    settings = load_settings(data_dir=data_dir, database_url=database_url, signin_link_ttl_secs=ttl)

    async def run() -> str | None:
        engine = create_engine(settings.resolved_database_url)
        try:
            await upgrade(engine)
            return await _demo_signin_link(settings, engine, settings.signin_link_ttl_secs)
        finally:
            await engine.dispose()

    link = asyncio.run(run())
    if link is None:
        raise click.ClickException(
            f"no demo app here (no {settings.data_dir / DEMO_CREDENTIALS_FILE}): sign in with an API token instead"
        )
    click.echo(link)


@main.command()
@_data_dir
@_database_url
def migrate(data_dir: Path | None, database_url: str | None) -> None:
    """Apply database migrations and exit."""
    from roomtape.db.engine import create_engine
    from roomtape.db.migrate import current_revision, upgrade

    settings = load_settings(data_dir=data_dir, database_url=database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)

    async def run() -> str | None:
        engine = create_engine(settings.resolved_database_url)
        try:
            await upgrade(engine)
            return await current_revision(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(run())
    click.echo(f"database at revision {revision}", err=True)


@main.command()
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
def repair(directory: Path) -> None:
    """Finalize half-written track files under DIRECTORY after a crash, and fix their manifests.

    Offline and without a database; the server does the same (and moves the recordings on) at start-up.
    """
    from roomtape.recording.startup import repair_tree

    for result in repair_tree(directory):
        for name in sorted(result.repaired):
            click.echo(f"repaired {result.directory / name}")
        for name in sorted(result.lost):
            click.echo(f"removed unreadable {result.directory / name}")


@main.command()
@_data_dir
@_database_url
@click.option("--broker-url", default=None, help="Redis URL of the job queue. Env: ROOMTAPE_BROKER_URL.")
def worker(data_dir: Path | None, database_url: str | None, broker_url: str | None) -> None:
    """Run queued jobs (uploads) and deliver webhooks; needs ROOMTAPE_BROKER_URL."""
    import logging

    from roomtape.jobs.distributed import run_worker

    settings = load_settings(data_dir=data_dir, database_url=database_url, broker_url=broker_url)
    if not settings.broker_url:
        raise click.ClickException("roomtape worker needs a broker: set ROOMTAPE_BROKER_URL=redis://host:6379/0")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(settings))


@main.group()
def recordings() -> None:
    """Inspect and repair recordings."""


@recordings.command("retry")
@click.argument("recording_id")
@_data_dir
@_database_url
def recordings_retry(recording_id: str, data_dir: Path | None, database_url: str | None) -> None:
    """Upload an ERRORED (or stuck UPLOADING) recording again.

    With a broker configured the upload is queued for a worker; otherwise it runs here until it is done.
    """
    from roomtape.db.models import Recording
    from roomtape.errors import RoomtapeError
    from roomtape.jobs.deps import open_deps
    from roomtape.jobs.recording import upload_until_done
    from roomtape.jobs.upload import retry_recording
    from roomtape.recording.spool import fetch, purge

    settings = load_settings(data_dir=data_dir, database_url=database_url)

    async def run() -> str:
        deps = await open_deps(settings)
        try:
            await retry_recording(deps, recording_id)
            if settings.broker_url:
                from roomtape.jobs.distributed import DistributedRunner

                queue = DistributedRunner(deps)
                await queue.start()
                await queue.submit_upload(recording_id)
                await queue.stop()
                return "UPLOADING (queued for a worker)"
            await fetch(deps, recording_id)  # from the spool, if the files are there and not here
            await upload_until_done(deps, recording_id)
            await purge(deps, recording_id)
            async with deps.sessions() as db:
                rec = await db.get(Recording, recording_id)
            if rec is None:
                return "recording is gone"
            return rec.status + (f": {rec.error}" if rec.error else "")
        finally:
            await deps.engine.dispose()

    try:
        click.echo(asyncio.run(run()))
    except RoomtapeError as exc:
        raise click.ClickException(exc.message) from exc


@main.command()
@click.argument("recording_id")
@click.option(
    "--layout", type=click.Choice(["grid", "active_speaker", "audio_only"]), default=None, help="Video layout."
)
@click.option(
    "--format", "fmt", type=click.Choice(["mp4", "webm", "ogg", "mp3", "aac"]), default=None, help="Output format."
)
@click.option("--channels", type=click.Choice(["mono", "stereo", "per_speaker"]), default=None, help="Audio channels.")
@click.option("--width", type=int, default=None, help="Picture width.")
@click.option("--height", type=int, default=None, help="Picture height.")
@_data_dir
@_database_url
def compose(
    recording_id: str,
    layout: str | None,
    fmt: str | None,
    channels: str | None,
    width: int | None,
    height: int | None,
    data_dir: Path | None,
    database_url: str | None,
) -> None:
    """Render a stopped meeting recording's composite again with another layout or format, and upload it."""
    from typing import cast

    from roomtape.db.models import Recording
    from roomtape.errors import RoomtapeError
    from roomtape.jobs.deps import open_deps
    from roomtape.jobs.recording import upload_until_done
    from roomtape.recording.compose.options import ChannelLayout, Layout, OutputFormat
    from roomtape.recording.meeting import recompose

    settings = load_settings(data_dir=data_dir, database_url=database_url)

    async def run() -> str:
        deps = await open_deps(settings)
        try:
            rec = await recompose(
                deps,
                recording_id,
                layout=cast("Layout | None", layout),
                fmt=cast("OutputFormat | None", fmt),
                channels=cast("ChannelLayout | None", channels),
                width=width,
                height=height,
            )
            await upload_until_done(deps, recording_id)
            async with deps.sessions() as db:
                done = await db.get(Recording, recording_id)
            if done is None:
                return "recording is gone"
            return f"{done.status} {rec.output_file_name}" + (f": {done.error}" if done.error else "")
        finally:
            await deps.engine.dispose()

    try:
        click.echo(asyncio.run(run()))
    except RoomtapeError as exc:
        raise click.ClickException(exc.message) from exc


@main.group()
def apps() -> None:
    """Create and list apps."""


@apps.command("create")
@click.option("--name", required=True, help="Name of the new app.")
@click.option("--account-id", default=None, help="Add the app to this existing account instead of a new one.")
@_data_dir
@_database_url
def apps_create(name: str, account_id: str | None, data_dir: Path | None, database_url: str | None) -> None:
    """Create an app, an API token and an API secret.

    Prints {"account_id", "app_id", "api_token", "api_secret"} as JSON on stdout. The API secret signs
    VideoSDK-style JWTs (HS256, claim ``apikey`` = the app id).
    """
    from roomtape.db.accounts import create_app_with_account
    from roomtape.domain.secretbox import SecretBox

    settings = load_settings(data_dir=data_dir, database_url=database_url)

    async def run(db: Any) -> dict[str, str | None]:
        box = SecretBox(settings.resolved_secret_key())
        creds = await create_app_with_account(db, name, account_id=account_id, box=box)
        await db.commit()
        return {
            "account_id": creds.account_id,
            "app_id": creds.app_id,
            "api_token": creds.api_token,
            "api_secret": creds.api_secret,
        }

    try:
        out = asyncio.run(_with_db(settings, run))
    except LookupError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(out))


@apps.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@_data_dir
@_database_url
def apps_list(as_json: bool, data_dir: Path | None, database_url: str | None) -> None:
    """List every app with its account."""
    from sqlalchemy import select

    from roomtape.db.models import App

    settings = load_settings(data_dir=data_dir, database_url=database_url)

    async def run(db: Any) -> list[dict[str, str]]:
        rows = (await db.scalars(select(App).order_by(App.created_at))).all()
        return [
            {
                "account_id": a.account_id,
                "app_id": a.id,
                "name": a.name,
                "created_at": a.created_at.isoformat(),
            }
            for a in rows
        ]

    rows = asyncio.run(_with_db(settings, run))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    click.echo(f"{'ACCOUNT ID':36}  {'APP ID':36}  NAME")
    for row in rows:
        click.echo(f"{row['account_id']:36}  {row['app_id']:36}  {row['name']}")


async def _with_db(settings: Settings, fn: Any) -> Any:
    """Migrate, then run ``fn(db_session)``."""
    from roomtape.db.engine import create_engine, session_factory
    from roomtape.db.migrate import upgrade

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.resolved_secret_key()
    engine = create_engine(settings.resolved_database_url)
    try:
        await upgrade(engine)
        async with session_factory(engine)() as db:
            return await fn(db)
    finally:
        await engine.dispose()


if __name__ == "__main__":  # pragma: no cover
    main()
