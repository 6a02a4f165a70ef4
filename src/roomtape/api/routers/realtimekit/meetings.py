"""``/accounts/{account_id}/realtime/kit/{app_id}/meetings``: meetings and their participants."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import ServerContext, get_context, get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import Page, TimeQuery, meeting_out, parse_time, participant_out
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Envelope, ListEnvelope, paging
from roomtape.db.meetings import list_app_meetings, list_meeting_participants
from roomtape.db.models import App, Meeting, Participant, utcnow
from roomtape.db.presets import preset_by_name, require_preset_name
from roomtape.domain.ids import preset_id
from roomtape.domain.tokens import sign_participant_token
from roomtape.errors import Conflict, NotFound
from roomtape.storage.validate import check_recording_config

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/meetings", tags=["meetings"])


async def get_meeting(db: AsyncSession, app: App, meeting_id: str) -> Meeting:
    """The app's meeting, or 404."""
    meeting = await db.get(Meeting, meeting_id)
    if meeting is None or meeting.app_id != app.id:
        raise NotFound("meeting not found")
    return meeting


async def get_participant(db: AsyncSession, meeting: Meeting, participant_id: str) -> Participant:
    """The meeting's participant, or 404."""
    participant = await db.get(Participant, participant_id)
    if participant is None or participant.meeting_id != meeting.id:
        raise NotFound("participant not found")
    return participant


def _recording_config(ctx: ServerContext, config: s.RecordingConfigIn | None) -> dict[str, Any] | None:
    """The stored form of a recording config: secrets of its storage config encrypted."""
    if config is None:
        return None
    data = config.model_dump(exclude_none=True)
    if "storage_config" in data:
        data["storage_config"] = ctx.box.seal_fields(data["storage_config"])
    return data


NOT_NULL = frozenset(
    {
        "status",
        "record_on_start",
        "live_stream_on_start",
        "persist_chat",
        "summarize_on_end",
        "transcribe_on_end",
        "session_keep_alive_time_in_secs",
    }
)
"""Meeting fields that cannot be null: in an update, ``null`` for them means "leave as it is"."""


def _apply(meeting: Meeting, ctx: ServerContext, body: s.MeetingCreate | s.MeetingUpdate, fields: set[str]) -> None:
    for name in fields:
        value = getattr(body, name)
        if value is None and name in NOT_NULL:
            if isinstance(body, s.MeetingUpdate):
                continue
            value = False  # create/replace: record_on_start and live_stream_on_start may be sent as null
        if name == "recording_config":
            meeting.recording_config = _recording_config(ctx, value)
        elif name == "ai_config":
            meeting.ai_config = value.model_dump(exclude_none=True) if value is not None else None
        else:
            setattr(meeting, name, value)


# ------------------------------------------------------------------------------------------ meetings
@router.post("", response_model=Envelope[s.MeetingOut], status_code=201, summary="Create a meeting")
async def create_meeting(
    body: s.MeetingCreate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.MeetingOut]:
    """Create a meeting. ``session_keep_alive_time_in_secs`` must lie in 60..600."""
    meeting = Meeting(app_id=app.id, status="ACTIVE")
    await check_recording_config(ctx.settings, body)
    _apply(meeting, ctx, body, set(s.MeetingCreate.model_fields))
    db.add(meeting)
    await db.commit()
    return Envelope(data=meeting_out(meeting))


@router.get("", response_model=ListEnvelope[s.MeetingOut], summary="List meetings")
async def list_meetings(
    page: Page = Depends(),
    search: str | None = Query(None, max_length=255, pattern=NO_NUL, description="Meeting id, or part of its title"),
    start_time: str | None = TimeQuery("Created at or after (ISO 8601)"),
    end_time: str | None = TimeQuery("Created at or before (ISO 8601)"),
    status: Literal["ACTIVE", "INACTIVE"] | None = None,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> ListEnvelope[s.MeetingOut]:
    """The app's meetings, newest first."""
    rows, total = await list_app_meetings(
        db,
        app.id,
        search=search,
        created_from=parse_time("start_time", start_time),
        created_to=parse_time("end_time", end_time),
        status=status,
        offset=page.offset,
        limit=page.per_page,
    )
    data = [meeting_out(m) for m in rows]
    return ListEnvelope(data=data, paging=paging(total, page.offset, len(data)))


@router.get("/{meeting_id}", response_model=Envelope[s.MeetingOut], summary="Get a meeting")
async def get_meeting_by_id(
    meeting_id: str,
    name: str | None = Query(None, max_length=255, pattern=NO_NUL, description="Accepted for compatibility; unused"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> Envelope[s.MeetingOut]:
    """One meeting."""
    return Envelope(data=meeting_out(await get_meeting(db, app, meeting_id)))


@router.put("/{meeting_id}", response_model=Envelope[s.MeetingOut], summary="Replace a meeting")
async def replace_meeting(
    meeting_id: str,
    body: s.MeetingCreate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.MeetingOut]:
    """Replace every setting of a meeting (fields not given go back to their defaults)."""
    meeting = await get_meeting(db, app, meeting_id)
    await check_recording_config(ctx.settings, body)
    _apply(meeting, ctx, body, set(s.MeetingCreate.model_fields))
    meeting.updated_at = utcnow()
    await db.commit()
    return Envelope(data=meeting_out(meeting))


@router.patch("/{meeting_id}", response_model=Envelope[s.MeetingOut], summary="Update a meeting")
async def update_meeting(
    meeting_id: str,
    body: s.MeetingUpdate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.MeetingOut]:
    """Change the fields given; ``status: INACTIVE`` closes the meeting to new joins."""
    meeting = await get_meeting(db, app, meeting_id)
    await check_recording_config(ctx.settings, body)
    _apply(meeting, ctx, body, set(body.model_fields_set))
    meeting.updated_at = utcnow()
    await db.commit()
    return Envelope(data=meeting_out(meeting))


# -------------------------------------------------------------------------------------- participants
def _token(ctx: ServerContext, app: App, p: Participant) -> str:
    return sign_participant_token(
        ctx.secret_key,
        app_id=app.id,
        meeting_id=p.meeting_id,
        participant_id=p.id,
        version=p.token_version,
        ttl_secs=ctx.settings.participant_token_ttl_secs,
    )


def _with_token(ctx: ServerContext, app: App, p: Participant) -> s.ParticipantWithToken:
    return s.ParticipantWithToken(**participant_out(p).model_dump(), token=_token(ctx, app, p))


@router.post(
    "/{meeting_id}/participants",
    response_model=Envelope[s.ParticipantWithToken],
    status_code=201,
    summary="Add a participant",
)
async def add_participant(
    meeting_id: str,
    body: s.ParticipantCreate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.ParticipantWithToken]:
    """Add a participant; the response carries its join token."""
    meeting = await get_meeting(db, app, meeting_id)
    await require_preset_name(db, app.id, body.preset_name)
    participant = Participant(
        meeting_id=meeting.id,
        custom_participant_id=body.custom_participant_id,
        preset_name=body.preset_name,
        name=body.name,
        picture=body.picture,
    )
    db.add(participant)
    try:
        await db.commit()
    except IntegrityError as exc:
        await db.rollback()
        raise Conflict(
            f"a participant with custom_participant_id {body.custom_participant_id!r} is already in this meeting"
        ) from exc
    return Envelope(data=_with_token(ctx, app, participant))


@router.get(
    "/{meeting_id}/participants",
    response_model=ListEnvelope[s.ParticipantOut],
    summary="List participants",
)
async def list_participants(
    meeting_id: str,
    page: Page = Depends(),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> ListEnvelope[s.ParticipantOut]:
    """The meeting's participants, in the order they were added."""
    meeting = await get_meeting(db, app, meeting_id)
    rows, total = await list_meeting_participants(db, meeting.id, offset=page.offset, limit=page.per_page)
    data = [participant_out(p) for p in rows]
    return ListEnvelope(data=data, paging=paging(total, page.offset, len(data)))


@router.get(
    "/{meeting_id}/participants/{participant_id}",
    response_model=Envelope[s.ParticipantOut],
    summary="Get a participant",
)
async def get_participant_by_id(
    meeting_id: str, participant_id: str, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.ParticipantOut]:
    """One participant (without a token: refresh it to get one)."""
    meeting = await get_meeting(db, app, meeting_id)
    return Envelope(data=participant_out(await get_participant(db, meeting, participant_id)))


@router.patch(
    "/{meeting_id}/participants/{participant_id}",
    response_model=Envelope[s.ParticipantWithToken],
    summary="Edit a participant",
)
async def edit_participant(
    meeting_id: str,
    participant_id: str,
    body: s.ParticipantUpdate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.ParticipantWithToken]:
    """Change name, picture or preset; returns the participant with a token."""
    meeting = await get_meeting(db, app, meeting_id)
    participant = await get_participant(db, meeting, participant_id)
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None and name == "preset_name":
            continue  # null means "leave as it is": a participant always has a preset
        if name == "preset_name":
            await require_preset_name(db, app.id, value)  # applies from the participant's next join
        setattr(participant, name, value)
    participant.updated_at = utcnow()
    await db.commit()
    return Envelope(data=_with_token(ctx, app, participant))


@router.delete(
    "/{meeting_id}/participants/{participant_id}",
    response_model=Envelope[s.ParticipantDeleted],
    summary="Delete a participant",
)
async def delete_participant(
    meeting_id: str, participant_id: str, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.ParticipantDeleted]:
    """Remove a participant; its tokens stop working."""
    meeting = await get_meeting(db, app, meeting_id)
    participant = await get_participant(db, meeting, participant_id)
    preset = await preset_by_name(db, app.id, participant.preset_name)
    data = s.ParticipantDeleted(
        created_at=participant.created_at,
        updated_at=participant.updated_at,
        custom_participant_id=participant.custom_participant_id,
        preset_id=preset.id if preset is not None else preset_id(participant.preset_name),
    )
    await db.delete(participant)
    await db.commit()
    return Envelope(data=data)


@router.post(
    "/{meeting_id}/participants/{participant_id}/token",
    response_model=Envelope[s.TokenOut],
    status_code=201,
    summary="Refresh a participant's token",
)
async def refresh_participant_token(
    meeting_id: str,
    participant_id: str,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.TokenOut]:
    """Issue a new join token; tokens issued before stop working."""
    meeting = await get_meeting(db, app, meeting_id)
    participant = await get_participant(db, meeting, participant_id)
    participant.token_version += 1
    participant.updated_at = utcnow()
    await db.commit()
    return Envelope(data=s.TokenOut(token=_token(ctx, app, participant)))
