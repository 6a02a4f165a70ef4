"""Identifiers. Every object id is a random UUID4 string, as RealtimeKit's are."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """Return a new random object id (UUID4, canonical lowercase form)."""
    return str(uuid.uuid4())


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a canonical UUID string (ids that are not cannot exist here)."""
    try:
        return str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def preset_id(preset_name: str) -> str:
    """A stable id for a preset name (roomtape keeps presets as names; the API reports an id too)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"roomtape:preset:{preset_name}"))
