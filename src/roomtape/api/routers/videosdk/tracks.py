"""VideoSDK participant track recordings: start, stop, list, fetch, delete.

``POST /v2/recordings/participant/track/start|stop`` (seeds 000, 001, 003),
``GET /v2/recordings/participant/track[/{id}]`` and ``DELETE /v2/recordings/participant/track/{id}``.

``roomId`` is the meeting id (or the room's ``customRoomId``); ``participantId`` is the participant id or its
custom participant id.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import PurePosixPath
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.context import get_context, get_db
from roomtape.api.routers.realtimekit.schemas import NO_NUL, SAFE_DIR
from roomtape.api.routers.videosdk.common import (
    PageInfo,
    iso_z,
    page_info,
    paging,
    room_of,
    videosdk_caller,
)
from roomtape.db.models import Meeting, Participant, Recording, TrackFile
from roomtape.db.videosdk import (
    Page,
    VideoSdkCaller,
    find_participant,
    find_recording,
    list_recordings,
    participant_ids,
    track_files,
)
from roomtape.errors import InvalidInput, NotFound, RoomtapeError, Unavailable
from roomtape.jobs.upload import choice_for
from roomtape.recording.delete import delete_recording
from roomtape.recording.manifest import TrackKind
from roomtape.recording.service import RecordingService
from roomtape.webhooks.outbound import check_url

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v2/recordings/participant/track", tags=["videosdk"])

Id = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]
QueryId = Annotated[str | None, Query(max_length=255, pattern=NO_NUL)]


class TrackStart(BaseModel):
    """Body of ``/v2/recordings/participant/track/start`` (seed 001)."""

    model_config = ConfigDict(extra="ignore")

    roomId: Id
    """The meeting id."""
    participantId: Id
    """The participant id (or custom participant id) to record."""
    kind: TrackKind
    """Which of the participant's tracks."""
    fileFormat: str | None = Field("webm", max_length=32, json_schema_extra={"enum": ["webm"]})
    """Only ``webm`` (anything else: 400 "only webm is supported")."""
    webhookUrl: Annotated[str, StringConstraints(max_length=2048)] | None = None
    """Where the ``participant-track-recording-*`` webhooks go (besides registered webhooks)."""
    bucketDirPath: Annotated[str, StringConstraints(max_length=1024, pattern=SAFE_DIR)] | None = None
    """Directory for the files: ``{bucketDirPath}/{sessionId}/{participantId}/{kind}/{file}``."""


class TrackStop(BaseModel):
    """Body of ``/v2/recordings/participant/track/stop``."""

    model_config = ConfigDict(extra="ignore")

    roomId: Id
    participantId: Id
    kind: TrackKind


class TrackRecordingOut(BaseModel):
    """What start and stop answer."""

    message: str
    recordingId: str
    roomId: str
    sessionId: str | None
    participantId: str
    kind: str
    status: str
    fileFormat: str = "webm"


def _service(request: Request) -> RecordingService:
    service = get_context(request).recordings
    if service is None:
        raise Unavailable("the recording service is not running")
    return service


async def _participant(db: AsyncSession, meeting: Meeting, participant_id: str) -> Participant:
    found = await find_participant(db, meeting.id, participant_id)
    if found is None:
        raise NotFound(f"participant {participant_id} not found in room {meeting.id}")
    return found


def _out(message: str, recording: Recording, participant_id: str, kind: str) -> TrackRecordingOut:
    return TrackRecordingOut(
        message=message,
        recordingId=recording.id,
        roomId=recording.meeting_id,
        sessionId=recording.session_id,
        participantId=participant_id,
        kind=kind,
        status=recording.status,
    )


@router.post("/start", response_model=TrackRecordingOut, summary="Start participant track recording")
async def start_track_recording(
    body: TrackStart,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> TrackRecordingOut:
    """Record one participant's track of one kind, one WebM file per continuous segment.

    Waits for the track if the participant has not published that kind yet. Starting what already
    records returns the running recording.
    """
    if body.fileFormat is not None and body.fileFormat.lower() != "webm":
        raise InvalidInput("only webm is supported")
    if body.webhookUrl:
        await check_url(get_context(request).settings, body.webhookUrl, "webhookUrl")
    meeting = await room_of(db, caller, body.roomId)
    participant = await _participant(db, meeting, body.participantId)
    caller_info: dict[str, Any] = {"type": "ORGANIZATION"}
    recording, created = await _service(request).start_participant_track(
        db,
        meeting=meeting,
        participant=participant,
        kind=body.kind,
        webhook_url=body.webhookUrl or None,
        bucket_dir_path=body.bucketDirPath,
        caller=caller_info,
    )
    message = "participant track recording started" if created else "participant track recording already running"
    return _out(message, recording, participant.id, body.kind)


@router.post("/stop", response_model=TrackRecordingOut, summary="Stop participant track recording")
async def stop_track_recording(
    body: TrackStop,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> TrackRecordingOut:
    """Stop recording a participant's track of one kind; every open segment is closed before answering."""
    meeting = await room_of(db, caller, body.roomId)
    participant = await _participant(db, meeting, body.participantId)
    recording = await _service(request).stop_participant_track(
        db, meeting_id=meeting.id, participant_id=participant.id, kind=body.kind
    )
    return _out("participant track recording stopped", recording, participant.id, body.kind)


# ---------------------------------------------------------------------------------------------------------
# the track recordings: list, one, delete


def videosdk_status(status: str) -> str:
    """VideoSDK's recording status for a roomtape status: ``completed``, ``failed`` or ``processing``."""
    return {"UPLOADED": "completed", "ERRORED": "failed"}.get(status, "processing")


class FileMeta(BaseModel):
    """What is known of a file's media."""

    format: str
    duration: float | None = None
    """Seconds, once the file is closed."""


class TrackFileItem(BaseModel):
    """One segment file of a track recording (one per continuous stretch of the track)."""

    filePath: str
    """The object key in the recording's storage."""
    fileUrl: str | None
    """A signed, expiring download URL once the file is uploaded; null before."""
    type: str
    """The track kind."""
    size: int
    meta: FileMeta
    index: int
    start: str | None
    end: str | None
    status: str
    """roomtape's file status: ``recording``, ``closed`` or ``uploaded``."""


class TrackRecordingItem(BaseModel):
    """A participant track recording as VideoSDK lists it."""

    id: str
    roomId: str
    sessionId: str | None
    participantId: str | None
    kind: str | None
    fileFormat: str = "webm"
    mode: str = "track"
    status: str
    """``completed`` (uploaded), ``failed`` or ``processing``."""
    start: str | None
    end: str | None
    files: list[TrackFileItem]


class TrackRecordingList(BaseModel):
    """``GET /v2/recordings/participant/track``."""

    pageInfo: PageInfo
    data: list[TrackRecordingItem]


class Deleted(BaseModel):
    """What a delete answers."""

    message: str
    id: str


def _duration(f: TrackFile) -> float | None:
    if f.started_at is None or f.ended_at is None:
        return None
    return round((f.ended_at - f.started_at).total_seconds(), 3)


async def _items(
    request: Request, rows: list[Recording], files: dict[str, list[TrackFile]]
) -> list[TrackRecordingItem]:
    ctx = get_context(request)
    ttl = ctx.settings.download_url_ttl_secs
    out = []
    for rec in rows:
        items: list[TrackFileItem] = []
        choice = None
        try:
            for f in files.get(rec.id, []):
                url = None
                if f.status == "uploaded":
                    choice = choice or choice_for(ctx, rec)
                    url = (await choice.backend.signed_url(choice.key(f.path), ttl)).url
                key = choice.key(f.path) if choice is not None else f.path
                items.append(
                    TrackFileItem(
                        filePath=key,
                        fileUrl=url,
                        type=f.kind,
                        size=f.size,
                        meta=FileMeta(format=PurePosixPath(f.path).suffix.lstrip(".") or "webm", duration=_duration(f)),
                        index=f.index,
                        start=iso_z(f.started_at),
                        end=iso_z(f.ended_at),
                        status=f.status,
                    )
                )
        except RoomtapeError as exc:
            log.warning("recording %s: no track download URLs: %s", rec.id, exc.message)
        finally:
            if choice is not None:
                await choice.backend.close()
        out.append(
            TrackRecordingItem(
                id=rec.id,
                roomId=rec.meeting_id,
                sessionId=rec.session_id,
                participantId=rec.participant_id,
                kind=rec.track_kind,
                status=videosdk_status(rec.status),
                start=iso_z(rec.started_time or rec.invoked_time),
                end=iso_z(rec.stopped_time),
                files=items,
            )
        )
    return out


@router.get("", response_model=TrackRecordingList, summary="Fetch all track recordings")
async def list_track_recordings(
    request: Request,
    roomId: QueryId = None,
    sessionId: QueryId = None,
    participantId: QueryId = None,
    page: Page = Depends(paging),
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> TrackRecordingList:
    """The caller's participant track recordings, newest first.

    Filter by room (id or customRoomId), session and participant (id or custom participant id). Each lists
    its segment files, with signed download URLs once they are uploaded.
    """
    meeting_ids = [(await room_of(db, caller, roomId)).id] if roomId else None
    participants = await participant_ids(db, meeting_ids, participantId) if participantId else None
    rows, total = await list_recordings(
        db,
        caller,
        kind="track",
        page=page,
        meeting_ids=meeting_ids,
        session_id=sessionId,
        participant_ids=participants,
    )
    recs = [rec for rec, _ in rows]
    files = await track_files(db, [r.id for r in recs])
    return TrackRecordingList(pageInfo=page_info(page, total), data=await _items(request, recs, files))


async def _own_track_recording(db: AsyncSession, caller: VideoSdkCaller, recording_id: uuid.UUID) -> Recording:
    found = await find_recording(db, caller, str(recording_id), kind="track")
    if found is None:
        raise NotFound(f"track recording {recording_id} not found")
    return found[0]


@router.get("/{recording_id:uuid}", response_model=TrackRecordingItem, summary="Fetch a track recording")
async def get_track_recording(
    recording_id: uuid.UUID,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> TrackRecordingItem:
    """One track recording with its files."""
    rec = await _own_track_recording(db, caller, recording_id)
    return (await _items(request, [rec], await track_files(db, [rec.id])))[0]


@router.delete("/{recording_id:uuid}", response_model=Deleted, summary="Delete a track recording")
async def delete_track_recording(
    recording_id: uuid.UUID,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> Deleted:
    """Delete a finished (uploaded or failed) track recording and its files; 409 while it records or uploads."""
    rec = await _own_track_recording(db, caller, recording_id)
    await db.close()
    await delete_recording(get_context(request), rec.id)
    return Deleted(message="track recording deleted", id=rec.id)
