"""The queries behind the dashboard: what its pages show beside the public API's answers.

The dashboard renders its lists from the same REST calls a script makes; what the API does not return
(participant names, counts and totals beside the lists, the signed-in token's apps) is read here. Every
function takes ids the caller already scoped to the signed-in app (they came from that app's API answers).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.accounts import token_account
from roomtape.db.models import App, Participant, Recording, Session, TrackFile
from roomtape.db.transcript_segments import session_progress
from roomtape.transcripts.store import list_session

__all__ = [
    "MeetingActivity",
    "TokenApps",
    "live_transcript",
    "meeting_activity",
    "participant_names",
    "recording_participants",
    "session_recording_totals",
    "session_recordings",
    "token_apps",
]


@dataclass(frozen=True, slots=True)
class TokenApps:
    """An API token's account and its apps."""

    account_id: str
    apps: list[tuple[str, str]]
    """``(app id, name)`` in the order they were made."""


async def token_apps(db: AsyncSession, token: str) -> TokenApps | None:
    """The account of the API token ``token``, with its apps; None for an unknown token."""
    account_id = await token_account(db, token)
    if account_id is None:
        return None
    rows = await db.execute(
        select(App.id, App.name).where(App.account_id == account_id).order_by(App.created_at, App.id)
    )
    return TokenApps(account_id, [(app_id, name) for app_id, name in rows.all()])


async def participant_names(db: AsyncSession, ids: Collection[str]) -> dict[str, str]:
    """Each participant's name, else custom participant id, else id."""
    if not ids:
        return {}
    rows = await db.execute(
        select(Participant.id, Participant.name, Participant.custom_participant_id).where(Participant.id.in_(ids))
    )
    return {pid: (name or custom or pid) for pid, name, custom in rows.all()}


async def live_transcript(db: AsyncSession, session: Session) -> dict[str, Any]:
    """The session's final transcript items so far, compact, with speaker names, and the live progress.

    Items are ``{id, speaker, start, end, text}`` (times on the session clock) in speaking order; the page
    diffs by ``id``, so an item sent again (replaced) or transcribed late (an earlier start) lands in place.
    """
    items = await list_session(db, session.id)
    names = await participant_names(db, {i.participant_id for i in items if i.participant_id})

    def speaker(participant_id: str | None, speaker_id: str | None, role: str) -> str:
        if participant_id and participant_id in names:
            return names[participant_id]
        return speaker_id or {"assistant": "Agent", "user": "User"}.get(role, role)

    return {
        "session_id": session.id,
        "status": session.status,
        "transcription": await session_progress(db, session.id),
        "items": [
            {
                "id": i.id,
                "speaker": speaker(i.participant_id, i.speaker_id, i.role),
                "start": i.start,
                "end": i.end,
                "text": i.text,
            }
            for i in items
        ],
    }


async def recording_participants(db: AsyncSession, recording_ids: Sequence[str]) -> list[tuple[str, str]]:
    """``(recording id, participant id)`` for every participant with a track file in those recordings."""
    if not recording_ids:
        return []
    rows = await db.execute(
        select(TrackFile.recording_id, TrackFile.participant_id)
        .where(TrackFile.recording_id.in_(recording_ids))
        .distinct()
    )
    return [(rid, pid) for rid, pid in rows.all()]


@dataclass(slots=True)
class MeetingActivity:
    """What the meetings list shows per meeting, keyed by meeting id (absent: none)."""

    participants: dict[str, int] = field(default_factory=dict)
    """Participants added to the meeting."""
    live_session: dict[str, str] = field(default_factory=dict)
    """The id of its LIVE session."""
    duration: dict[str, float] = field(default_factory=dict)
    """Seconds its sessions lasted (a live one until ``now``)."""
    recordings: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    """Number of recordings and their total bytes."""
    active_recording: dict[str, str] = field(default_factory=dict)
    """The id of a composite recording in one of the active statuses."""


async def meeting_activity(
    db: AsyncSession, meeting_ids: Sequence[str], *, now: datetime, active_statuses: Collection[str]
) -> MeetingActivity:
    """Participants, sessions and recordings of each meeting, counted.

    Args:
        db: The database session.
        meeting_ids: The meetings.
        now: Where a live session's duration ends.
        active_statuses: Recording statuses that count as running.
    """
    out = MeetingActivity()
    participants = await db.execute(
        select(Participant.meeting_id, func.count())
        .where(Participant.meeting_id.in_(meeting_ids))
        .group_by(Participant.meeting_id)
    )
    out.participants.update((mid, int(n)) for mid, n in participants.all())
    spans = await db.execute(
        select(Session.meeting_id, Session.id, Session.status, Session.started_at, Session.ended_at).where(
            Session.meeting_id.in_(meeting_ids)
        )
    )
    for mid, sid, status, started, ended in spans.all():
        if status == "LIVE":
            out.live_session[mid] = sid
        out.duration[mid] = out.duration.get(mid, 0.0) + ((ended or now) - started).total_seconds()
    recordings = await db.execute(
        select(Recording.meeting_id, func.count(), func.sum(Recording.file_size))
        .where(Recording.meeting_id.in_(meeting_ids))
        .group_by(Recording.meeting_id)
    )
    out.recordings.update((mid, (n, size)) for mid, n, size in recordings.all())
    active = await db.execute(
        select(Recording.meeting_id, Recording.id).where(
            Recording.meeting_id.in_(meeting_ids),
            Recording.kind == "composite",
            Recording.status.in_(active_statuses),
        )
    )
    out.active_recording.update((mid, rid) for mid, rid in active.all())
    return out


async def session_recording_totals(db: AsyncSession, session_ids: Sequence[str]) -> dict[str, tuple[int, int | None]]:
    """Number of recordings and their total bytes per session (absent: none)."""
    rows = await db.execute(
        select(Recording.session_id, func.count(), func.sum(Recording.file_size))
        .where(Recording.session_id.in_(session_ids))
        .group_by(Recording.session_id)
    )
    return {sid: (n, size) for sid, n, size in rows.all() if sid is not None}


async def session_recordings(db: AsyncSession, session_id: str) -> list[Recording]:
    """A session's recordings, oldest first."""
    rows = await db.scalars(
        select(Recording).where(Recording.session_id == session_id).order_by(Recording.invoked_time)
    )
    return list(rows)
