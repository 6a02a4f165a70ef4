"""VideoSDK meeting (composite) recordings: start, end, list, fetch, delete.

``POST /v2/recordings/start|end`` (seed 000; ``/stop`` is an alias of ``/end``, as in VideoSDK's API
reference), ``GET /v2/recordings[/{id}]`` and ``DELETE /v2/recordings/{id}``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.context import get_context, get_db
from roomtape.api.routers.realtimekit.schemas import NO_NUL, SAFE_DIR
from roomtape.api.routers.videosdk.common import (
    Links,
    PageInfo,
    iso_z,
    links,
    page_info,
    paging,
    room_of,
    videosdk_caller,
)
from roomtape.api.routers.videosdk.tracks import Deleted, videosdk_status
from roomtape.db.models import Recording
from roomtape.db.videosdk import Page, VideoSdkCaller, find_recording, list_recordings
from roomtape.errors import Conflict, NotFound, Unavailable
from roomtape.recording.delete import delete_recording
from roomtape.recording.meeting import MeetingRecordings, derive_compose, running_composite
from roomtape.recording.service import clean_bucket_dir_path
from roomtape.webhooks.outbound import check_url

router = APIRouter(prefix="/v2/recordings", tags=["videosdk"])

Text = Annotated[str, StringConstraints(max_length=2048, pattern=NO_NUL)]
RoomId = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]


class MeetingRecordingConfig(BaseModel):
    """``config`` of ``/v2/recordings/start``.

    ``layout {type GRID|SPOTLIGHT|SIDEBAR}``, ``orientation``, ``theme``, ``mode video-and-audio|audio``,
    ``quality low|med|high``.
    """

    model_config = ConfigDict(extra="ignore")

    layout: dict[str, Any] | None = None
    orientation: Literal["landscape", "portrait"] | None = None
    theme: Annotated[str, StringConstraints(max_length=32, pattern=NO_NUL)] | None = None
    mode: Literal["video-and-audio", "audio"] | None = None
    quality: Literal["low", "med", "high"] | None = None


class MeetingRecordingStart(BaseModel):
    """Body of ``/v2/recordings/start``."""

    model_config = ConfigDict(extra="ignore")

    roomId: RoomId
    config: MeetingRecordingConfig | None = None
    webhookUrl: Text | None = None
    awsDirPath: Annotated[str, StringConstraints(max_length=2048, pattern=SAFE_DIR)] | None = None
    """Directory for the composite, under the storage root (no ``..``, absolute path or control character)."""


class MeetingRecordingEnd(BaseModel):
    """Body of ``/v2/recordings/end``."""

    model_config = ConfigDict(extra="ignore")

    roomId: RoomId


class MeetingRecordingOut(BaseModel):
    """What start and end answer."""

    message: str
    recordingId: str
    roomId: str
    sessionId: str | None
    status: str


def _meetings(request: Request) -> MeetingRecordings:
    manager = get_context(request).meeting_recordings
    if manager is None:
        raise Unavailable("the recording service is not running")
    return manager


@router.post("/start", response_model=MeetingRecordingOut, summary="Start meeting recording")
async def start_meeting_recording(
    body: MeetingRecordingStart,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> MeetingRecordingOut:
    """Record the room's live session into one composite MP4 (rendered when the recording ends)."""
    meeting = await room_of(db, caller, body.roomId)
    cfg = body.config.model_dump(exclude_none=True) if body.config else {}
    settings, _ = derive_compose(videosdk_config=cfg or {"layout": {"type": "GRID"}})
    config: dict[str, Any] = {"api": "videosdk", "compose": settings, "videosdk_config": cfg}
    if body.webhookUrl:
        await check_url(get_context(request).settings, body.webhookUrl, "webhookUrl")
        config["webhook_url"] = body.webhookUrl
    if body.awsDirPath:
        config["bucket_dir_path"] = clean_bucket_dir_path(body.awsDirPath, "awsDirPath")
    recording = await _meetings(request).start(db, meeting, config=config, caller={"type": "ORGANIZATION"})
    return MeetingRecordingOut(
        message="recording started",
        recordingId=recording.id,
        roomId=meeting.id,
        sessionId=recording.session_id,
        status=recording.status,
    )


@router.post("/end", response_model=MeetingRecordingOut, summary="End meeting recording")
@router.post("/stop", response_model=MeetingRecordingOut, summary="Stop meeting recording (alias of /end)")
async def end_meeting_recording(
    body: MeetingRecordingEnd,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> MeetingRecordingOut:
    """Stop the room's running meeting recording (409 if none runs)."""
    meeting = await room_of(db, caller, body.roomId)
    running = await running_composite(db, meeting.id)
    if running is None:
        raise Conflict(f"room {meeting.id} has no running recording")
    recording = await _meetings(request).stop(running.id, "API_CALL", {"type": "ORGANIZATION"})
    return MeetingRecordingOut(
        message="recording stopped",
        recordingId=recording.id,
        roomId=meeting.id,
        sessionId=recording.session_id,
        status=recording.status,
    )


# ---------------------------------------------------------------------------------------------------------
# the meeting recordings: list, one, delete

QueryId = Annotated[str | None, Query(max_length=255, pattern=NO_NUL)]


class Resolution(BaseModel):
    """Width and height of the composite's video."""

    width: int
    height: int


class CompositeMeta(BaseModel):
    """What is known of the composite file."""

    format: str
    duration: int | None = None
    """Seconds of recording (paused time excluded)."""
    resolution: Resolution | None = None


class CompositeFile(BaseModel):
    """The composite file of a meeting recording (null until it is uploaded)."""

    fileUrl: str
    """Signed, expiring download URL."""
    fileUrlExpiry: str | None
    filePath: str
    size: int | None
    type: str
    """``video`` or ``audio``."""
    meta: CompositeMeta


class MeetingRecordingItem(BaseModel):
    """A meeting recording as VideoSDK lists it."""

    id: str
    roomId: str
    sessionId: str | None
    status: str
    """``completed`` (uploaded), ``failed`` or ``processing``."""
    start: str | None
    end: str | None
    file: CompositeFile | None
    links: Links


class MeetingRecordingList(BaseModel):
    """``GET /v2/recordings``."""

    pageInfo: PageInfo
    data: list[MeetingRecordingItem]


def _item(request: Request, rec: Recording) -> MeetingRecordingItem:
    compose: dict[str, Any] = rec.config.get("compose") or {}
    fmt = str(compose.get("format") or rec.output_file_name.rsplit(".", 1)[-1] or "mp4")
    audio_only = compose.get("layout") == "audio_only" or fmt in ("ogg", "mp3", "aac", "m4a")
    resolution = None
    if not audio_only and compose.get("width") and compose.get("height"):
        resolution = Resolution(width=int(compose["width"]), height=int(compose["height"]))
    file = None
    if rec.status == "UPLOADED" and rec.download_url:
        file = CompositeFile(
            fileUrl=rec.download_url,
            fileUrlExpiry=iso_z(rec.download_url_expiry),
            filePath=rec.output_file_name,
            size=rec.file_size,
            type="audio" if audio_only else "video",
            meta=CompositeMeta(format=fmt, duration=rec.recording_duration, resolution=resolution),
        )
    return MeetingRecordingItem(
        id=rec.id,
        roomId=rec.meeting_id,
        sessionId=rec.session_id,
        status=videosdk_status(rec.status),
        start=iso_z(rec.started_time or rec.invoked_time),
        end=iso_z(rec.stopped_time),
        file=file,
        links=links(request, rec.meeting_id, rec.session_id),
    )


@router.get("", response_model=MeetingRecordingList, summary="Fetch recordings")
async def list_meeting_recordings(
    request: Request,
    roomId: QueryId = None,
    sessionId: QueryId = None,
    page: Page = Depends(paging),
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> MeetingRecordingList:
    """The caller's meeting recordings, newest first, optionally of one room (id or customRoomId) or session."""
    meeting_ids = [(await room_of(db, caller, roomId)).id] if roomId else None
    rows, total = await list_recordings(
        db, caller, kind="composite", page=page, meeting_ids=meeting_ids, session_id=sessionId
    )
    return MeetingRecordingList(pageInfo=page_info(page, total), data=[_item(request, rec) for rec, _ in rows])


async def _own(db: AsyncSession, caller: VideoSdkCaller, recording_id: uuid.UUID) -> Recording:
    found = await find_recording(db, caller, str(recording_id), kind="composite")
    if found is None:
        raise NotFound(f"recording {recording_id} not found")
    return found[0]


@router.get("/{recording_id:uuid}", response_model=MeetingRecordingItem, summary="Fetch a recording")
async def get_meeting_recording(
    recording_id: uuid.UUID,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> MeetingRecordingItem:
    """One meeting recording; ``file`` carries its signed download URL once it is uploaded."""
    return _item(request, await _own(db, caller, recording_id))


@router.delete("/{recording_id:uuid}", response_model=Deleted, summary="Delete a recording")
async def delete_meeting_recording(
    recording_id: uuid.UUID,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> Deleted:
    """Delete a finished (uploaded or failed) meeting recording and its files; 409 while it runs or uploads."""
    rec = await _own(db, caller, recording_id)
    await db.close()
    await delete_recording(get_context(request), rec.id)
    return Deleted(message="recording deleted", id=rec.id)
