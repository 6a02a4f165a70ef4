"""``/accounts/{account_id}/realtime/kit/{app_id}/recordings``: list, get, and start track recording.

The recording object follows seed 004 and the Cloudflare SDK's ``types/realtime_kit/recording_*``. Track
recordings (``kind: "track"``) carry their files in the extra field ``files``; composite recordings come
from the composite engine.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import get_context, get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import Page, TimeQuery, meeting_out, parse_time
from roomtape.api.routers.realtimekit.meetings import get_meeting
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Paging, paging
from roomtape.db.models import App, Meeting, Recording, TrackFile
from roomtape.db.recordings import RecordingFilter, list_recordings, participant_id_of, recording_files
from roomtape.domain.secretbox import redact
from roomtape.errors import Conflict, NotFound, Unavailable
from roomtape.jobs.upload import refresh_download_urls, retry_recording
from roomtape.recording.delete import delete_recording
from roomtape.recording.manifest import TrackKind
from roomtape.recording.meeting import MeetingRecordings, realtimekit_start, recompose, running_composite
from roomtape.storage.validate import check_storage_config

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


class TranscriptionOut(BaseModel):
    """roomtape extension: speech-to-text of the recording's audio (when its meeting asks for it)."""

    status: Literal["running", "done", "failed"]
    mode: Literal["live", "after_stop"] = "after_stop"
    """``live``: the session's audio was transcribed segment by segment while the meeting went on (the counts
    are the live segments within the recording's span); ``after_stop``: the recording's own files, after it
    stopped."""
    backend: str | None = None
    """Which backend and model, e.g. ``pocketsphinx/en-us``."""
    segments: int = 0
    """Audio segments to transcribe."""
    segments_done: int = 0
    segments_failed: int = 0
    items: int = 0
    """Transcript items made."""
    error: str | None = None
    """Why the transcription failed (the backend's error)."""
    note: str | None = None


def transcription_out(config: dict[str, Any]) -> TranscriptionOut | None:
    """The recording's transcription progress, if it has any."""
    raw = config.get("transcription") if isinstance(config, dict) else None
    if not isinstance(raw, dict) or raw.get("status") not in ("running", "done", "failed"):
        return None
    return TranscriptionOut.model_validate({k: v for k, v in raw.items() if k in TranscriptionOut.model_fields})


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
    transcription: TranscriptionOut | None = None
    """roomtape extension: progress of the speech-to-text of the recording's audio."""


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
        transcription=transcription_out(recording.config),
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
    expired: bool | None = Query(
        None, description="true: only recordings whose download URL has expired; false: only the others"
    ),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> RecordingListResponse:
    """The app's recordings, newest first unless ``sort_order=ASC``."""
    # Repeated (``status=A&status=B``) or comma-separated.
    wanted = {v.strip() for item in status for v in item.split(",") if v.strip()} if status else None
    where = RecordingFilter(
        app_id=app.id,
        meeting_id=meeting_id,
        search=search,
        invoked_from=parse_time("start_time", start_time),
        invoked_to=parse_time("end_time", end_time),
        statuses=wanted,
        expired=expired,
    )
    rows, total = await list_recordings(
        db, where, ascending=sort_order == "ASC", offset=page.offset, limit=page.per_page
    )
    data = [recording_out(r, m, await recording_files(db, r)) for r, m in rows]
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
            found = await participant_id_of(db, meeting.id, user_id)
            if found is None:
                raise NotFound(f"participant {user_id} not found in meeting {meeting.id}")
            participant_ids.append(found)
    recording = await service.start_meeting_tracks(
        db, meeting=meeting, participant_ids=participant_ids, kinds=kinds, caller={"type": "ORGANIZATION"}
    )
    return TrackRecordingResponse(data=TrackRecordingData(recording=recording_out(recording, files=[])))


@router.get("/{recording_id:uuid}", response_model=RecordingResponse, summary="Get a recording")
async def get_one_recording(
    recording_id: uuid.UUID, request: Request, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> RecordingResponse:
    """One recording of the app (recording ids are UUIDs, so ``/recordings/track`` is not one)."""
    recording = await db.get(Recording, str(recording_id))
    if recording is None or recording.app_id != app.id:
        raise NotFound("recording not found")
    if await refresh_download_urls(get_context(request), recording):  # an expired URL is signed again
        await db.commit()
        await db.refresh(recording)
    return RecordingResponse(data=recording_out(recording, files=await recording_files(db, recording)))


@router.post("/{recording_id:uuid}/retry", response_model=RecordingResponse, summary="Retry a failed upload")
async def retry_recording_upload(
    recording_id: uuid.UUID, request: Request, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> RecordingResponse:
    """Upload an ``ERRORED`` (or stuck ``UPLOADING``) recording again; 409 in any other state.

    roomtape extension: the recording goes back to ``UPLOADING`` and the upload job is submitted.
    """
    ctx = get_context(request)
    recording = await db.get(Recording, str(recording_id))
    if recording is None or recording.app_id != app.id:
        raise NotFound("recording not found")
    if ctx.jobs is None:
        raise Unavailable("the job runner is not running")
    await retry_recording(ctx, recording.id)
    await ctx.jobs.submit_upload(recording.id)
    ctx.jobs.events_committed()
    await db.refresh(recording)
    return RecordingResponse(data=recording_out(recording, files=await recording_files(db, recording)))


# ---------------------------------------------------------------------------------------------------------
# composite (meeting) recordings: start, active, pause/resume/stop, compose again


class AudioConfig(BaseModel):
    """``audio_config`` of "start recording"."""

    model_config = ConfigDict(extra="ignore")

    channel: Literal["mono", "stereo"] = "stereo"
    codec: Literal["MP3", "AAC", "OPUS"] = "AAC"
    """``OPUS`` is a roomtape extension: Ogg/Opus for an audio-only composite and the export file (where each
    channel is one participant, the recorded packets are copied, not re-encoded)."""
    export_file: bool = False
    channel_map: s.ChannelMap | None = None
    """roomtape extension (agent sessions): user left, agent right."""


X264Preset = Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"]


class VideoConfig(BaseModel):
    """``video_config`` of "start recording" (``watermark`` accepted and ignored)."""

    model_config = ConfigDict(extra="ignore")

    codec: Literal["H264", "VP8", "VP9"] = "H264"
    width: int = Field(1280, ge=16, le=1920)
    height: int = Field(720, ge=16, le=1920)
    export_file: bool = True
    fps: int | None = Field(None, ge=1, le=60)
    """roomtape extension: the composite's frame rate (default 30)."""
    preset: X264Preset | None = None
    """roomtape extension: the H.264 encoder's speed preset (default ``superfast``: keeps up live on 2 cores)."""


class BucketConfig(BaseModel):
    """``realtimekit_bucket_config``: whether download URLs are given out."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True


class RecordingStart(BaseModel):
    """Body of "start recording" (``RecordingStartRecordingsParams``)."""

    model_config = ConfigDict(extra="ignore")

    meeting_id: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
    audio_config: AudioConfig | None = None
    video_config: VideoConfig | None = None
    file_name_prefix: Annotated[str, StringConstraints(max_length=128, pattern=r"^[A-Za-z0-9_.\-]*$")] | None = None
    max_seconds: int | None = Field(None, ge=60, le=86400)
    allow_multiple_recordings: bool = False
    storage_config: s.StorageConfigIn | None = None
    realtimekit_bucket_config: BucketConfig | None = None
    url: str | None = Field(None, max_length=2048)
    interactive_config: dict[str, Any] | None = None
    rtmp_out_config: dict[str, Any] | None = None


class RecordingAction(BaseModel):
    """Body of "pause/resume/stop recording"."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["pause", "resume", "stop"]


class ComposeRequest(BaseModel):
    """Body of "compose again" (roomtape extension)."""

    model_config = ConfigDict(extra="forbid")

    layout: Literal["grid", "active_speaker", "audio_only"] | None = None
    format: Literal["mp4", "webm", "ogg", "mp3", "aac"] | None = None
    channels: Literal["mono", "stereo", "per_speaker"] | None = None
    width: int | None = Field(None, ge=16, le=3840)
    height: int | None = Field(None, ge=16, le=2160)


def _meetings(request: Request) -> MeetingRecordings:
    manager = get_context(request).meeting_recordings
    if manager is None:
        raise Unavailable("the recording service is not running")
    return manager


async def _own_recording(db: AsyncSession, app: App, recording_id: uuid.UUID) -> Recording:
    recording = await db.get(Recording, str(recording_id))
    if recording is None or recording.app_id != app.id:
        raise NotFound("recording not found")
    return recording


@router.post("", response_model=RecordingResponse, status_code=201, summary="Start recording a meeting")
async def start_recordings(
    body: RecordingStart,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> RecordingResponse:
    """Record the meeting's live session into one composite file (rendered when the recording stops).

    409 while another recording of the meeting runs, unless ``allow_multiple_recordings``.
    """
    meeting = await get_meeting(db, app, body.meeting_id)
    manager = _meetings(request)
    storage = None
    if body.storage_config is not None:
        await check_storage_config(get_context(request).settings, body.storage_config.model_dump(exclude_none=True))
        storage = get_context(request).box.seal_fields(body.storage_config.model_dump(exclude_none=True))
    config, storage, max_seconds = realtimekit_start(
        meeting,
        audio_config=body.audio_config.model_dump() if body.audio_config else None,
        video_config=body.video_config.model_dump() if body.video_config else None,
        file_name_prefix=body.file_name_prefix,
        bucket_config=body.realtimekit_bucket_config.model_dump() if body.realtimekit_bucket_config else None,
        storage_config=storage,
        max_seconds=body.max_seconds,
    )
    recording = await manager.start(
        db,
        meeting,
        config=config,
        caller={"type": "ORGANIZATION"},
        allow_multiple=body.allow_multiple_recordings,
        storage_config=storage,
        max_seconds=max_seconds,
    )
    return RecordingResponse(data=recording_out(recording))


@router.get("/active-recording/{meeting_id}", response_model=RecordingResponse, summary="Fetch the active recording")
async def get_active_recordings(
    meeting_id: Annotated[str, Path(max_length=64, pattern=NO_NUL)],
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> RecordingResponse:
    """The meeting's running (INVOKED, RECORDING or PAUSED) composite recording, newest first."""
    meeting = await get_meeting(db, app, meeting_id)
    recording = await running_composite(db, meeting.id)
    if recording is None:
        raise NotFound(f"meeting {meeting.id} has no active recording")
    return RecordingResponse(data=recording_out(recording))


@router.put("/{recording_id:uuid}", response_model=RecordingResponse, summary="Pause, resume or stop a recording")
async def pause_resume_stop_recording(
    recording_id: uuid.UUID,
    body: RecordingAction,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> RecordingResponse:
    """``pause`` (RECORDING → PAUSED), ``resume`` (PAUSED → RECORDING) or ``stop`` (→ UPLOADING); 409 otherwise."""
    recording = await _own_recording(db, app, recording_id)
    manager = _meetings(request)
    if recording.kind != "composite":
        if body.action != "stop" or get_context(request).recordings is None:
            raise Conflict("track recordings can only be stopped")
        service = get_context(request).recordings
        assert service is not None
        if not service.is_active(recording.id):
            raise Conflict(f"recording is {recording.status}, not running")
        updated = await service.stop_recording(recording.id, "API_CALL", {"type": "ORGANIZATION"})
    elif body.action == "pause":
        updated = await manager.pause(recording.id)
    elif body.action == "resume":
        updated = await manager.resume(recording.id)
    else:
        updated = await manager.stop(recording.id, "API_CALL", {"type": "ORGANIZATION"})
    return RecordingResponse(data=recording_out(updated, files=await recording_files(db, updated)))


@router.post(
    "/{recording_id:uuid}/compose",
    response_model=RecordingResponse,
    status_code=202,
    summary="Render the composite again (roomtape extension)",
)
async def compose_recording(
    recording_id: uuid.UUID,
    body: ComposeRequest,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> RecordingResponse:
    """Render a stopped composite recording again with another layout or format, then upload it.

    The render runs in a worker thread; the response comes once it is written (UPLOADING); the upload job
    then makes it UPLOADED with the new ``download_url``.
    """
    recording = await _own_recording(db, app, recording_id)
    if recording.kind != "composite":
        raise Conflict("only composite recordings can be composed")
    ctx = get_context(request)
    updated = await recompose(
        ctx,
        recording.id,
        layout=body.layout,
        fmt=body.format,
        channels=body.channels,
        width=body.width,
        height=body.height,
    )
    if ctx.jobs is not None:
        await ctx.jobs.submit_upload(updated.id)
    return RecordingResponse(data=recording_out(updated))


@router.delete(
    "/{recording_id:uuid}", response_model=RecordingResponse, summary="Delete a recording (roomtape extension)"
)
async def delete_one_recording(
    recording_id: uuid.UUID, request: Request, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> RecordingResponse:
    """Delete an ``UPLOADED`` or ``ERRORED`` recording: its files in storage and on disk, and the recording.

    409 while it runs or uploads (stop it, or let the upload finish or fail, first). Returns it as it was.
    """
    recording = await _own_recording(db, app, recording_id)
    data = recording_out(recording, files=await recording_files(db, recording))
    await db.close()
    await delete_recording(get_context(request), data.id)
    return RecordingResponse(data=data)
