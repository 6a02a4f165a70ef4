"""``/accounts/{account_id}/realtime/kit/{app_id}/recordings``: list, get, and start track recording.

The recording object follows seed 004 and the Cloudflare SDK's ``types/realtime_kit/recording_*``. Track
recordings (``kind: "track"``) carry their files in the extra field ``files``; composite recordings come
from the composite engine.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import get_context, get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import Page, TimeQuery, meeting_out, parse_time
from roomtape.api.routers.realtimekit.meetings import get_meeting
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Paging, paging
from roomtape.db.models import App, Meeting, Participant, Recording, TrackFile
from roomtape.domain.secretbox import redact
from roomtape.errors import NotFound, Unavailable
from roomtape.recording.manifest import TrackKind

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/recordings", tags=["recordings"])

RecordingStatus = Literal["INVOKED", "RECORDING", "UPLOADING", "UPLOADED", "ERRORED", "PAUSED"]
STATUSES: tuple[str, ...] = ("INVOKED", "RECORDING", "UPLOADING", "UPLOADED", "ERRORED", "PAUSED")


class ReasonCaller(BaseModel):
    """Who started or stopped a recording."""

    name: str | None = None
    type: Literal["ORGANIZATION", "USER"] | None = None
    user_Id: str | None = None


class StartReason(BaseModel):
    """Why a recording started."""

    caller: ReasonCaller | None = None
    reason: Literal["API_CALL", "RECORD_ON_START"] | None = None


class StopReason(BaseModel):
    """Why a recording stopped."""

    caller: ReasonCaller | None = None
    reason: Literal["API_CALL", "INTERNAL_ERROR", "ALL_PEERS_LEFT"] | None = None


class TrackFileOut(BaseModel):
    """One segment file of a track recording (roomtape extension)."""

    participant_id: str
    kind: str
    index: int
    codec: str
    path: str
    """``{sessionId}/{participantId}/{kind}/{file}`` under the recording's bucket directory."""
    size: int
    started_at: datetime | None
    ended_at: datetime | None
    frames: int
    status: str


class RecordingOut(BaseModel):
    """A recording, as RealtimeKit returns it."""

    id: str
    audio_download_url: str | None = None
    download_url: str | None = None
    download_url_expiry: datetime | None = None
    file_size: float | None = None
    invoked_time: datetime
    output_file_name: str
    session_id: str | None = None
    started_time: datetime | None = None
    status: RecordingStatus
    stopped_time: datetime | None = None
    recording_duration: int | None = None
    start_reason: StartReason | None = None
    stop_reason: StopReason | None = None
    storage_config: s.StorageConfigOut | None = None
    meeting: s.MeetingOut | None = None
    kind: Literal["composite", "track"] = "composite"
    """roomtape extension: one composite file, or files per participant track."""
    files: list[TrackFileOut] | None = None
    """roomtape extension: the segment files of a track recording."""


class RecordingListResponse(BaseModel):
    """Response of "fetch all recordings"."""

    success: bool = True
    data: list[RecordingOut]
    paging: Paging


class RecordingResponse(BaseModel):
    """Response of "fetch a recording"."""

    success: bool = True
    data: RecordingOut


class TrackRecordingData(BaseModel):
    """``data`` of "start track recording"."""

    recording: RecordingOut


class TrackRecordingResponse(BaseModel):
    """Response of "start track recording"."""

    success: bool = True
    data: TrackRecordingData


class Layer(BaseModel):
    """One layer of a track recording: what to record (``media_kind``) and a file name prefix."""

    model_config = ConfigDict(extra="ignore", strict=True)

    file_name_prefix: Annotated[str, StringConstraints(max_length=255)] | None = None
    media_kind: TrackKind = "audio"
    """``audio`` per RealtimeKit; roomtape also records ``video``, ``screen_audio`` and ``screen_video``."""


class TrackRecordingStart(BaseModel):
    """Body of "start track recording" (``RecordingStartTrackRecordingParams``)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    meeting_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    layers: dict[Annotated[str, StringConstraints(max_length=64)], Layer] | None = Field(None, max_length=16)
    user_ids: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] | None = Field(
        None, max_length=1000
    )


def recording_out(
    recording: Recording, meeting: Meeting | None = None, files: list[TrackFile] | None = None
) -> RecordingOut:
    """A recording row as the API returns it (storage secrets removed)."""
    storage = recording.storage_config
    return RecordingOut(
        id=recording.id,
        audio_download_url=recording.audio_download_url,
        download_url=recording.download_url,
        download_url_expiry=recording.download_url_expiry,
        file_size=recording.file_size,
        invoked_time=recording.invoked_time,
        output_file_name=recording.output_file_name,
        session_id=recording.session_id,
        started_time=recording.started_time,
        status=cast(RecordingStatus, recording.status),
        stopped_time=recording.stopped_time,
        recording_duration=recording.recording_duration,
        start_reason=StartReason.model_validate(recording.start_reason) if recording.start_reason else None,
        stop_reason=StopReason.model_validate(recording.stop_reason) if recording.stop_reason else None,
        storage_config=s.StorageConfigOut.model_validate(redact(storage)) if storage else None,
        meeting=meeting_out(meeting) if meeting is not None else None,
        kind="track" if recording.kind == "track" else "composite",
        files=(
            [
                TrackFileOut(
                    participant_id=f.participant_id,
                    kind=f.kind,
                    index=f.index,
                    codec=f.codec,
                    path=f.path,
                    size=f.size,
                    started_at=f.started_at,
                    ended_at=f.ended_at,
                    frames=f.frames,
                    status=f.status,
                )
                for f in files
            ]
            if files is not None
            else None
        ),
    )


async def _files(db: AsyncSession, recording: Recording) -> list[TrackFile] | None:
    if recording.kind != "track":
        return None
    rows = await db.scalars(
        select(TrackFile)
        .where(TrackFile.recording_id == recording.id)
        .order_by(TrackFile.participant_id, TrackFile.kind, TrackFile.index)
    )
    return list(rows.all())


@router.get("", response_model=RecordingListResponse, summary="List recordings")
async def get_recordings(
    page: Page = Depends(),
    meeting_id: str | None = Query(None, max_length=64, pattern=NO_NUL, description="Only this meeting's recordings"),
    search: str | None = Query(
        None, max_length=255, pattern=NO_NUL, description="Meeting id, or part of the meeting title"
    ),
    start_time: str | None = TimeQuery("Invoked at or after (ISO 8601)"),
    end_time: str | None = TimeQuery("Invoked at or before (ISO 8601)"),
    status: list[str] | None = Query(None, description="Only these statuses (repeat, or comma-separated)"),
    sort_by: Literal["invokedTime"] = "invokedTime",
    sort_order: Literal["ASC", "DESC"] = "DESC",
    expired: bool | None = Query(None, description="Accepted for compatibility; local files do not expire"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> RecordingListResponse:
    """The app's recordings, newest first unless ``sort_order=ASC``."""
    where: list[Any] = [Recording.app_id == app.id]
    if meeting_id:
        where.append(Recording.meeting_id == meeting_id)
    if search:
        where.append(or_(Meeting.title.contains(search, autoescape=True), Recording.meeting_id == search))
    start, end = parse_time("start_time", start_time), parse_time("end_time", end_time)
    if start is not None:
        where.append(Recording.invoked_time >= start)
    if end is not None:
        where.append(Recording.invoked_time <= end)
    if status:
        # Repeated (``status=A&status=B``) or comma-separated; a value that is no status matches nothing.
        wanted = {v.strip() for item in status for v in item.split(",") if v.strip()}
        where.append(Recording.status.in_(wanted))
    joined = select(Recording, Meeting).join(Meeting, Meeting.id == Recording.meeting_id).where(*where)
    total = int(await db.scalar(select(func.count()).select_from(joined.subquery())) or 0)
    order = Recording.invoked_time.asc() if sort_order == "ASC" else Recording.invoked_time.desc()
    rows = (await db.execute(joined.order_by(order, Recording.id).offset(page.offset).limit(page.per_page))).all()
    data = [recording_out(r, m, await _files(db, r)) for r, m in rows]
    return RecordingListResponse(data=data, paging=paging(total, page.offset, len(data)))


@router.post(
    "/track",
    response_model=TrackRecordingResponse,
    status_code=201,
    summary="Start recording audio and video tracks",
)
async def start_track_recording(
    body: TrackRecordingStart,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> TrackRecordingResponse:
    """Record the meeting's participants' tracks, one WebM file per continuous segment.

    Without ``layers`` every participant's audio is recorded (as RealtimeKit does); a layer's ``media_kind``
    may also be ``video``, ``screen_audio`` or ``screen_video``. ``user_ids`` (participant ids or custom
    participant ids) limits the recording to those participants; otherwise later joiners are recorded too.
    """
    meeting = await get_meeting(db, app, body.meeting_id)
    service = get_context(request).recordings
    if service is None:
        raise Unavailable("the recording service is not running")
    kinds: list[TrackKind] = sorted({layer.media_kind for layer in (body.layers or {}).values()}) or ["audio"]
    participant_ids: list[str] | None = None
    if body.user_ids is not None:
        participant_ids = []
        for user_id in body.user_ids:
            found = await db.scalar(
                select(Participant.id)
                .where(
                    Participant.meeting_id == meeting.id,
                    or_(Participant.id == user_id, Participant.custom_participant_id == user_id),
                )
                .limit(1)
            )
            if found is None:
                raise NotFound(f"participant {user_id} not found in meeting {meeting.id}")
            participant_ids.append(found)
    recording = await service.start_meeting_tracks(
        db, meeting=meeting, participant_ids=participant_ids, kinds=kinds, caller={"type": "ORGANIZATION"}
    )
    return TrackRecordingResponse(data=TrackRecordingData(recording=recording_out(recording, files=[])))


@router.get("/{recording_id:uuid}", response_model=RecordingResponse, summary="Get a recording")
async def get_one_recording(
    recording_id: uuid.UUID, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> RecordingResponse:
    """One recording of the app (recording ids are UUIDs, so ``/recordings/track`` is not one)."""
    recording = await db.get(Recording, str(recording_id))
    if recording is None or recording.app_id != app.id:
        raise NotFound("recording not found")
    return RecordingResponse(data=recording_out(recording, files=await _files(db, recording)))
