"""``/accounts/{account_id}/realtime/kit/{app_id}/presets``: the app's presets (Cloudflare SDK ``presets.*``).

``POST`` creates, ``GET`` lists (names and times, ``search`` by name), ``GET/PUT/PATCH/DELETE /{preset_id}``
read, replace, change and delete one. ``PATCH`` merges nested objects into the stored preset; ``null``
leaves a field as it is. Renaming a preset renames it for the participants that use it; deleting one that
participants use is a 409. What is enforced is described in ``roomtape.domain.presets``.
"""

from __future__ import annotations

import functools
import operator
from datetime import datetime
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field, create_model
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import get_db
from roomtape.api.routers.realtimekit.convert import Page
from roomtape.api.routers.realtimekit.schemas import NO_NUL, Name
from roomtape.api.schemas import Envelope, ListEnvelope, paging
from roomtape.db import presets as repo
from roomtape.db.models import App, Preset
from roomtape.domain.presets import PresetConfig, PresetDocument, PresetPermissions, PresetUI

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/presets", tags=["presets"])


class PresetCreate(PresetDocument):
    """Body of "create preset" and "replace preset": parts left out take their defaults."""

    name: Name


def _is_model(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, BaseModel)


def _partial(model: type[BaseModel], cache: dict[type[BaseModel], type[BaseModel]]) -> type[BaseModel]:
    """``model`` with every field optional (default None), nested models likewise: a PATCH body.

    Constraints stay, so a body the schema accepts always merges into a valid preset.
    """
    if model in cache:
        return cache[model]
    fields: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        annotation: Any = info.annotation
        if _is_model(annotation):
            annotation = _partial(annotation, cache)
        elif get_origin(annotation) in (Union, UnionType) and any(_is_model(a) for a in get_args(annotation)):
            parts = [_partial(a, cache) if _is_model(a) else a for a in get_args(annotation)]
            annotation = functools.reduce(operator.or_, parts)
        if info.metadata:
            annotation = Annotated[annotation, *info.metadata]
        fields[name] = (annotation | None, Field(None, alias=info.alias, description=info.description))
    partial = create_model(f"{model.__name__}Patch", __base__=model.__base__, __doc__=model.__doc__, **fields)
    cache[model] = partial
    return partial


_PATCH: dict[type[BaseModel], type[BaseModel]] = {}
ConfigPatch: Any = _partial(PresetConfig, _PATCH)
PermissionsPatch: Any = _partial(PresetPermissions, _PATCH)
UIPatch: Any = _partial(PresetUI, _PATCH)


class PresetUpdate(BaseModel):
    """Body of "update preset": the fields given change, nested objects merge into the stored ones."""

    model_config = PresetDocument.model_config

    name: Name | None = None
    config: ConfigPatch | None = None
    permissions: PermissionsPatch | None = None
    ui: UIPatch | None = None


class PresetOut(PresetDocument):
    """A preset, as the SDK's ``preset_*_response.Data``."""

    id: str
    name: str
    created_at: datetime
    updated_at: datetime


class PresetSummary(BaseModel):
    """A preset in a list, as the SDK's ``preset_get_response.Data``."""

    id: str
    name: str
    created_at: datetime
    updated_at: datetime


def _out(preset: Preset) -> PresetOut:
    return PresetOut.model_validate(
        {
            "id": preset.id,
            "name": preset.name,
            "created_at": preset.created_at,
            "updated_at": preset.updated_at,
            "config": preset.config,
            "permissions": preset.permissions,
            "ui": preset.ui,
        }
    )


def _document(body: PresetDocument) -> PresetDocument:
    return PresetDocument(config=body.config, permissions=body.permissions, ui=body.ui)


@router.post("", response_model=Envelope[PresetOut], status_code=201, summary="Create a preset")
async def create_preset(
    body: PresetCreate, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[PresetOut]:
    """Create a preset (409 if the app has one of that name)."""
    preset = await repo.create_preset(db, app.id, body.name, _document(body))
    await db.commit()
    return Envelope(data=_out(preset))


@router.get("", response_model=ListEnvelope[PresetSummary], summary="List presets")
async def list_presets(
    page: Page = Depends(),
    search: str | None = Query(None, max_length=255, pattern=NO_NUL, description="Part of a preset's name"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> ListEnvelope[PresetSummary]:
    """The app's presets, oldest first (the defaults first)."""
    total, rows = await repo.list_presets(db, app.id, search=search, offset=page.offset, limit=page.per_page)
    data = [PresetSummary(id=p.id, name=p.name, created_at=p.created_at, updated_at=p.updated_at) for p in rows]
    return ListEnvelope(data=data, paging=paging(total, page.offset, len(data)))


@router.get("/{preset_id}", response_model=Envelope[PresetOut], summary="Get a preset")
async def get_preset_by_id(
    preset_id: str, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[PresetOut]:
    """One preset."""
    return Envelope(data=_out(await repo.get_preset(db, app.id, preset_id)))


@router.put("/{preset_id}", response_model=Envelope[PresetOut], summary="Replace a preset")
async def replace_preset_by_id(
    preset_id: str, body: PresetCreate, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[PresetOut]:
    """Replace every part of a preset; participants joining from now on get the new permissions."""
    preset = await repo.get_preset(db, app.id, preset_id)
    await repo.replace_preset(db, preset, body.name, _document(body))
    await db.commit()
    return Envelope(data=_out(preset))


@router.patch("/{preset_id}", response_model=Envelope[PresetOut], summary="Update a preset")
async def update_preset(
    preset_id: str, body: PresetUpdate, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[PresetOut]:
    """Change the fields given; ``null`` leaves a field as it is."""
    preset = await repo.get_preset(db, app.id, preset_id)
    patch = body.model_dump(exclude_none=True, by_alias=True, exclude={"name"})
    await repo.update_preset(db, preset, body.name, patch)
    await db.commit()
    return Envelope(data=_out(preset))


@router.delete("/{preset_id}", response_model=Envelope[PresetOut], summary="Delete a preset")
async def delete_preset(
    preset_id: str, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[PresetOut]:
    """Delete a preset; 409 while participants use it."""
    preset = await repo.get_preset(db, app.id, preset_id)
    data = _out(preset)
    await repo.delete_preset(db, preset)
    await db.commit()
    return Envelope(data=data)
