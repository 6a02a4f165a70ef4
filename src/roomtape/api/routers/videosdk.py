"""VideoSDK-compatible endpoints: ``POST /v2/recordings/participant/track/start|stop`` (seeds 000, 001, 003).

Code written for VideoSDK works by changing the base URL and the token. The ``Authorization`` header
(``Bearer`` optional) carries either

- a roomtape API token (``rt_…``), which reaches every app of its account, or
- a VideoSDK-style JWT signed with HS256 by an app's API secret, with claim ``apikey`` = the app id (what
  ``roomtape apps create`` prints as ``app_id`` and ``api_secret``); it reaches that app only.

``roomId`` is the meeting id; ``participantId`` is the participant id or its custom participant id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import jwt
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import bearer_token
from roomtape.api.context import get_context, get_db
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.db.models import ApiToken, App, Meeting, Participant, Recording
from roomtape.domain.tokens import hash_api_token, looks_like_jwt
from roomtape.errors import Conflict, InvalidInput, NotFound, RoomtapeError, Unauthenticated, Unavailable
from roomtape.recording.manifest import TrackKind
from roomtape.recording.meeting import MeetingRecordings, derive_compose, running_composite
from roomtape.recording.service import RecordingService, clean_bucket_dir_path
from roomtape.webhooks.outbound import check_url

router = APIRouter(prefix="/v2/recordings/participant/track", tags=["videosdk"])

Id = Annotated[str, StringConstraints(min_length=1, max_length=255, pattern=NO_NUL)]


@dataclass(frozen=True, slots=True)
class VideoSdkCaller:
    """Who calls: an account (API token) or one app of it (app JWT)."""

    account_id: str
    """The account."""
    app_id: str | None
    """The app the JWT was signed for; None for an API token (every app of the account)."""


async def videosdk_caller(request: Request, db: AsyncSession = Depends(get_db)) -> VideoSdkCaller:
    """Authenticate an API token or an app JWT carrying ``apikey``.

    Raises:
        Unauthenticated: Missing, unknown, forged or expired credentials.
    """
    token = bearer_token(request)
    if not looks_like_jwt(token):
        account_id = await db.scalar(select(ApiToken.account_id).where(ApiToken.token_hash == hash_api_token(token)))
        if account_id is None:
            raise Unauthenticated("invalid API token")
        return VideoSdkCaller(account_id=account_id, app_id=None)
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Unauthenticated("token is not a valid JWT") from exc
    apikey = unverified.get("apikey")
    if not isinstance(apikey, str) or not apikey:
        raise Unauthenticated("token has no apikey claim: sign a JWT with claim apikey = app id")
    app = await db.get(App, apikey)
    if app is None or not app.api_secret:
        raise Unauthenticated("invalid token")
    try:
        secret = get_context(request).box.open(app.api_secret)
    except RoomtapeError as exc:
        raise Unauthenticated("invalid token") from exc
    try:
        jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("invalid token signature") from exc
    return VideoSdkCaller(account_id=app.account_id, app_id=app.id)


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
    bucketDirPath: Annotated[str, StringConstraints(max_length=1024)] | None = None
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


async def _meeting(db: AsyncSession, caller: VideoSdkCaller, room_id: str) -> Meeting:
    meeting = await db.get(Meeting, room_id)
    if meeting is not None:
        app = await db.get(App, meeting.app_id)
        if app is not None and app.account_id == caller.account_id and caller.app_id in (None, app.id):
            return meeting
    raise NotFound(f"room {room_id} not found")


async def _participant(db: AsyncSession, meeting: Meeting, participant_id: str) -> Participant:
    found = (
        await db.scalars(
            select(Participant)
            .where(
                Participant.meeting_id == meeting.id,
                or_(Participant.id == participant_id, Participant.custom_participant_id == participant_id),
            )
            .order_by(Participant.created_at)
        )
    ).all()
    exact = [p for p in found if p.id == participant_id]
    if exact or found:
        return (exact or found)[0]
    raise NotFound(f"participant {participant_id} not found in room {meeting.id}")


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
    meeting = await _meeting(db, caller, body.roomId)
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
    meeting = await _meeting(db, caller, body.roomId)
    participant = await _participant(db, meeting, body.participantId)
    recording = await _service(request).stop_participant_track(
        db, meeting_id=meeting.id, participant_id=participant.id, kind=body.kind
    )
    return _out("participant track recording stopped", recording, participant.id, body.kind)


# ---------------------------------------------------------------------------------------------------------
# meeting (composite) recording: POST /v2/recordings/start | /v2/recordings/end (seed 000)

meeting_router = APIRouter(prefix="/v2/recordings", tags=["videosdk"])

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
    awsDirPath: Text | None = None


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


@meeting_router.post("/start", response_model=MeetingRecordingOut, summary="Start meeting recording")
async def start_meeting_recording(
    body: MeetingRecordingStart,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> MeetingRecordingOut:
    """Record the room's live session into one composite MP4 (rendered when the recording ends)."""
    meeting = await _meeting(db, caller, body.roomId)
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


@meeting_router.post("/end", response_model=MeetingRecordingOut, summary="End meeting recording")
async def end_meeting_recording(
    body: MeetingRecordingEnd,
    request: Request,
    caller: VideoSdkCaller = Depends(videosdk_caller),
    db: AsyncSession = Depends(get_db),
) -> MeetingRecordingOut:
    """Stop the room's running meeting recording (409 if none runs)."""
    meeting = await _meeting(db, caller, body.roomId)
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
