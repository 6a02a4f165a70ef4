"""Presets of an app: create, read, change, delete, and the policy a participant joins with.

Every query is scoped to one app: a preset id of another app is "not found", as one that does not exist.
The callers commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, Participant, Preset, utcnow
from roomtape.domain.presets import DEFAULT_PRESETS, PresetDocument, PresetPolicy, deep_merge, policy_of
from roomtape.errors import Conflict, InvalidInput, NotFound

__all__ = [
    "add_default_presets",
    "create_preset",
    "delete_preset",
    "get_preset",
    "list_presets",
    "participants_using",
    "policy_for",
    "preset_by_name",
    "replace_preset",
    "require_preset_name",
    "update_preset",
]


def add_default_presets(db: AsyncSession, app_id: str) -> list[Preset]:
    """Give a new app the default presets (``domain.presets.DEFAULT_PRESETS``)."""
    rows = [Preset(app_id=app_id, name=name, **doc) for name, doc in DEFAULT_PRESETS.items()]
    db.add_all(rows)
    return rows


async def get_preset(db: AsyncSession, app_id: str, preset_id: str) -> Preset:
    """The app's preset with this id.

    Raises:
        NotFound: no such preset in this app.
    """
    preset = await db.get(Preset, preset_id)
    if preset is None or preset.app_id != app_id:
        raise NotFound("preset not found")
    return preset


async def preset_by_name(db: AsyncSession, app_id: str, name: str) -> Preset | None:
    """The app's preset called ``name``, if any."""
    return await db.scalar(select(Preset).where(Preset.app_id == app_id, Preset.name == name))


async def require_preset_name(db: AsyncSession, app_id: str, name: str) -> None:
    """Check that a participant's ``preset_name`` names one of the app's presets.

    Raises:
        NotFound: the app has no preset of that name (the message lists the ones it has).
    """
    if await preset_by_name(db, app_id, name) is None:
        names = (await db.scalars(select(Preset.name).where(Preset.app_id == app_id).order_by(Preset.name))).all()
        raise NotFound(f"preset {name!r} not found in this app; its presets are: {', '.join(names) or 'none'}")


async def list_presets(
    db: AsyncSession, app_id: str, *, search: str | None, offset: int, limit: int
) -> tuple[int, Sequence[Preset]]:
    """One page of the app's presets, oldest first, with the total count."""
    where: list[Any] = [Preset.app_id == app_id]
    if search:
        where.append(Preset.name.contains(search, autoescape=True))
    total = int(await db.scalar(select(func.count()).select_from(Preset).where(*where)) or 0)
    rows = (
        await db.scalars(
            select(Preset).where(*where).order_by(Preset.created_at, Preset.name).offset(offset).limit(limit)
        )
    ).all()
    return total, rows


def _document(config: Any, permissions: Any, ui: Any) -> dict[str, Any]:
    try:
        doc = PresetDocument.model_validate({"config": config, "permissions": permissions, "ui": ui})
    except ValueError as exc:
        raise InvalidInput(f"preset: {exc}") from exc
    return doc.model_dump(mode="json", by_alias=True)


async def _flush_unique(db: AsyncSession, name: str) -> None:
    try:
        await db.flush()
    except IntegrityError as exc:
        await db.rollback()
        raise Conflict(f"a preset named {name!r} already exists in this app") from exc


async def create_preset(db: AsyncSession, app_id: str, name: str, document: PresetDocument) -> Preset:
    """Create a preset.

    Raises:
        Conflict: the app has a preset of that name.
    """
    preset = Preset(app_id=app_id, name=name, **document.model_dump(mode="json", by_alias=True))
    db.add(preset)
    await _flush_unique(db, name)
    return preset


async def _rename(db: AsyncSession, preset: Preset, name: str) -> None:
    """Rename a preset, and its participants' ``preset_name`` with it (they reference it by name)."""
    if name == preset.name:
        return
    old = preset.name
    preset.name = name
    await _flush_unique(db, name)
    for participant in await participants_using(db, preset.app_id, old):
        participant.preset_name = name


async def replace_preset(db: AsyncSession, preset: Preset, name: str, document: PresetDocument) -> Preset:
    """Replace every part of a preset (parts not given go back to their defaults)."""
    data = document.model_dump(mode="json", by_alias=True)
    preset.config, preset.permissions, preset.ui = data["config"], data["permissions"], data["ui"]
    await _rename(db, preset, name)
    preset.updated_at = utcnow()
    return preset


async def update_preset(db: AsyncSession, preset: Preset, name: str | None, patch: dict[str, Any]) -> Preset:
    """Change the given fields: ``config``, ``permissions`` and ``ui`` merge into the stored ones.

    Raises:
        InvalidInput: the merged document is not a valid preset.
    """
    merged = _document(
        deep_merge(preset.config, patch.get("config") or {}),
        deep_merge(preset.permissions, patch.get("permissions") or {}),
        deep_merge(preset.ui, patch.get("ui") or {}),
    )
    preset.config, preset.permissions, preset.ui = merged["config"], merged["permissions"], merged["ui"]
    if name is not None:
        await _rename(db, preset, name)
    preset.updated_at = utcnow()
    return preset


async def participants_using(db: AsyncSession, app_id: str, name: str) -> Sequence[Participant]:
    """The app's participants whose ``preset_name`` is ``name``."""
    return (
        await db.scalars(
            select(Participant)
            .join(Meeting, Meeting.id == Participant.meeting_id)
            .where(Meeting.app_id == app_id, Participant.preset_name == name)
        )
    ).all()


async def delete_preset(db: AsyncSession, preset: Preset) -> None:
    """Delete a preset no participant uses.

    Raises:
        Conflict: participants of the app still name it.
    """
    count = int(
        await db.scalar(
            select(func.count())
            .select_from(Participant)
            .join(Meeting, Meeting.id == Participant.meeting_id)
            .where(Meeting.app_id == preset.app_id, Participant.preset_name == preset.name)
        )
        or 0
    )
    if count:
        raise Conflict(f"preset {preset.name!r} is in use by {count} participant(s); give them another preset first")
    await db.delete(preset)


async def policy_for(db: AsyncSession, app_id: str, preset_name: str) -> PresetPolicy | None:
    """What a participant of preset ``preset_name`` may do, or None if the app has no such preset."""
    preset = await preset_by_name(db, app_id, preset_name)
    if preset is None:
        return None
    return policy_of(preset.name, {"config": preset.config, "permissions": preset.permissions, "ui": preset.ui})
