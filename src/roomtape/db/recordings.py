"""The queries behind the RealtimeKit recordings API.

An app's recordings, their track files, and who in a meeting a recording is asked for. They only read the
database, so an ``api`` node and a ``media`` node can both call them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, Participant, Recording, TrackFile, utcnow

__all__ = ["RecordingFilter", "list_recordings", "participant_id_of", "recording_files", "track_files"]


@dataclass(frozen=True, slots=True)
class RecordingFilter:
    """Which of an app's recordings a list shows; every field left at None filters nothing."""

    app_id: str
    """The app whose recordings these are."""
    meeting_id: str | None = None
    """Only this meeting's."""
    search: str | None = None
    """A meeting id, or part of the meeting's title."""
    invoked_from: datetime | None = None
    """Invoked at or after."""
    invoked_to: datetime | None = None
    """Invoked at or before."""
    statuses: Collection[str] | None = None
    """Only these statuses (a value that is no status matches nothing, and so does an empty collection)."""
    expired: bool | None = None
    """True: only those whose download URL has expired; False: only the others."""


async def list_recordings(
    db: AsyncSession, where: RecordingFilter, *, ascending: bool, offset: int, limit: int
) -> tuple[list[tuple[Recording, Meeting]], int]:
    """One page of the recordings ``where`` selects, by invoked time, with their meetings and the total count."""
    conditions: list[Any] = [Recording.app_id == where.app_id]
    if where.meeting_id:
        conditions.append(Recording.meeting_id == where.meeting_id)
    if where.search:
        conditions.append(
            or_(Meeting.title.contains(where.search, autoescape=True), Recording.meeting_id == where.search)
        )
    if where.invoked_from is not None:
        conditions.append(Recording.invoked_time >= where.invoked_from)
    if where.invoked_to is not None:
        conditions.append(Recording.invoked_time <= where.invoked_to)
    if where.statuses is not None:  # an empty collection matches nothing
        conditions.append(Recording.status.in_(where.statuses))
    if where.expired is not None:
        is_expired = Recording.download_url_expiry.is_not(None) & (Recording.download_url_expiry < utcnow())
        conditions.append(is_expired if where.expired else ~is_expired)
    joined = select(Recording, Meeting).join(Meeting, Meeting.id == Recording.meeting_id).where(*conditions)
    total = int(await db.scalar(select(func.count()).select_from(joined.subquery())) or 0)
    order = Recording.invoked_time.asc() if ascending else Recording.invoked_time.desc()
    rows = (await db.execute(joined.order_by(order, Recording.id).offset(offset).limit(limit))).all()
    return [(recording, meeting) for recording, meeting in rows], total


async def track_files(db: AsyncSession, recording_id: str) -> list[TrackFile]:
    """A recording's track segment files, by participant, kind and index (a composite's sources too)."""
    rows = await db.scalars(
        select(TrackFile)
        .where(TrackFile.recording_id == recording_id)
        .order_by(TrackFile.participant_id, TrackFile.kind, TrackFile.index)
    )
    return list(rows.all())


async def recording_files(db: AsyncSession, recording: Recording) -> list[TrackFile] | None:
    """A track recording's segment files in order; None for a composite recording (the API shows none)."""
    return await track_files(db, recording.id) if recording.kind == "track" else None


async def participant_id_of(db: AsyncSession, meeting_id: str, user_id: str) -> str | None:
    """The id of the meeting's participant whose id or custom participant id is ``user_id``."""
    found: str | None = await db.scalar(
        select(Participant.id)
        .where(
            Participant.meeting_id == meeting_id,
            or_(Participant.id == user_id, Participant.custom_participant_id == user_id),
        )
        .limit(1)
    )
    return found
