"""``/accounts/{account_id}/realtime/kit/apps``: list and create apps; an app's settings.

roomtape extension: ``GET``/``PATCH …/apps/{app_id}`` read and change an app's ``name`` and its default
``storage_config`` — where recordings that give none are uploaded (recording > app > server default). Its
secrets are write-only and encrypted at rest, as a recording's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import Caller, account_of, app_of
from roomtape.api.context import ServerContext, get_context, get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import Page
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Envelope, ListEnvelope, paging
from roomtape.db import accounts
from roomtape.db.models import App
from roomtape.domain.secretbox import redact
from roomtape.storage.validate import check_storage_config

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/apps", tags=["apps"])


class AppSettings(BaseModel):
    """An app with its settings (secrets of ``storage_config`` never included)."""

    id: str
    name: str
    created_at: datetime
    storage_config: s.StorageConfigOut | None = Field(
        None, description="Default storage of the app's recordings that give none (None: the server's default)"
    )


class AppUpdate(s._Request):
    """Body of "edit app": the fields given change; ``storage_config: null`` removes the app's default."""

    name: s.Name | None = None
    storage_config: s.StorageConfigIn | None = None


def _settings_of(app: App) -> AppSettings:
    storage = app.storage_config
    return AppSettings(
        id=app.id,
        name=app.name,
        created_at=app.created_at,
        storage_config=s.StorageConfigOut.model_validate(redact(storage)) if storage else None,
    )


@router.get("", response_model=ListEnvelope[s.AppOut], summary="List apps")
async def list_apps(
    page: Page = Depends(),
    search: str | None = Query(None, max_length=255, pattern=NO_NUL, description="Part of the app's name or its id"),
    sort_order: Literal["ASC", "DESC"] = "DESC",
    caller: Caller = Depends(account_of),
    db: AsyncSession = Depends(get_db),
) -> ListEnvelope[s.AppOut]:
    """The apps of the account, newest first unless ``sort_order=ASC``."""
    rows, total = await accounts.list_account_apps(
        db, caller.account_id, search=search, ascending=sort_order == "ASC", offset=page.offset, limit=page.per_page
    )
    data = [s.AppOut(id=a.id, name=a.name, created_at=a.created_at) for a in rows]
    return ListEnvelope(data=data, paging=paging(total, page.offset, len(data)))


@router.post("", response_model=Envelope[s.AppCreated], status_code=201, summary="Create an app")
async def create_app(
    body: s.AppCreate, caller: Caller = Depends(account_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.AppCreated]:
    """Create an app in the caller's account. The caller's API token works for it at once."""
    app = await accounts.create_app(db, caller.account_id, body.name)
    await db.commit()
    return Envelope(data=s.AppCreated(app=s.AppOut(id=app.id, name=app.name, created_at=app.created_at)))


@router.get("/{app_id}", response_model=Envelope[AppSettings], summary="Get an app")
async def get_app(app: App = Depends(app_of)) -> Envelope[AppSettings]:
    """The app and its settings."""
    return Envelope(data=_settings_of(app))


@router.patch("/{app_id}", response_model=Envelope[AppSettings], summary="Edit an app")
async def edit_app(
    body: AppUpdate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[AppSettings]:
    """Rename the app or set its default ``storage_config``.

    The storage is checked like a recording's: 400 for a ``path`` that could leave the storage root or a host
    that resolves to a private, loopback or link-local address (unless the server allows it).
    """
    if "name" in body.model_fields_set and body.name is not None:
        app.name = body.name
    if "storage_config" in body.model_fields_set:
        if body.storage_config is None:
            app.storage_config = None
        else:
            plain = body.storage_config.model_dump(exclude_none=True)
            await check_storage_config(ctx.settings, plain)
            app.storage_config = ctx.box.seal_fields(plain)
    await db.commit()
    return Envelope(data=_settings_of(app))
