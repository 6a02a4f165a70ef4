"""RealtimeKit livestreams (the Cloudflare SDK's ``realtime_kit.livestreams``): start, stop, active, list, sessions.

Shapes follow ``cloudflare/types/realtime_kit/livestream_*``. The work is ``roomtape.livestream.service``
(rows, statuses, webhooks) and ``roomtape.livestream.engine`` (HLS, RTMP push); this module translates HTTP.
``playback_url`` is a signed, expiring HLS URL served by roomtape (``roomtape.api.routers.hls``);
``ingest_server`` is the RTMP push target without its stream key, ``stream_key`` is never returned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import get_context, get_db
from roomtape.api.routers.realtimekit.convert import Page, TimeQuery, parse_time
from roomtape.api.routers.realtimekit.meetings import get_meeting
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Envelope, Paging, paging
from roomtape.db import livestreams as q
from roomtape.db.models import App, Livestream, LivestreamSession
from roomtape.errors import InvalidInput, NotFound, Unavailable
from roomtape.livestream.service import LivestreamService

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}", tags=["livestreams"])

LivestreamStatus = Literal["LIVE", "IDLE", "ERRORED", "INVOKED"]
MeetingId = Annotated[str, Path(max_length=64, pattern=NO_NUL)]
ObjectId = Annotated[str, Path(max_length=64, pattern=NO_NUL)]


class LivestreamOut(BaseModel):
    """A livestream, as RealtimeKit returns it."""

    id: str
    created_at: datetime
    updated_at: datetime
    disabled: str | None = None
    ingest_server: str | None = None
    """The RTMP(S) push target without its stream key (None: HLS only)."""
    meeting_id: str
    name: str | None = None
    playback_url: str | None = None
    """Signed, expiring HLS playlist URL served by roomtape."""
    status: LivestreamStatus
    stream_key: str | None = None
    """Never returned (the push target's key is write-only)."""
    start_reason: str | None = None
    """roomtape extension: ``API_CALL`` or ``LIVE_STREAM_ON_START``."""
    rtmp: dict[str, Any] | None = None
    """roomtape extension: the push's state on the node streaming it (``connecting``, ``live``,
    ``retrying`` with ``attempt``, ``retry_in``, ``error``); None without a push or when not running here."""


class LivestreamSessionOut(BaseModel):
    """One run of a livestream."""

    id: str
    livestream_id: str
    created_at: datetime
    updated_at: datetime
    invoked_time: datetime
    started_time: datetime | None = None
    stopped_time: datetime | None = None
    ingest_seconds: float
    viewer_seconds: float
    err_message: str | None = None


class StartedOut(BaseModel):
    """``data`` of "start livestreaming a meeting"."""

    id: str
    status: LivestreamStatus
    playback_url: str | None = None
    ingest_server: str | None = None
    stream_key: str | None = None
    meeting_id: str
    name: str | None = None


class StoppedOut(BaseModel):
    """``data`` of "stop livestreaming a meeting"."""

    message: str
    id: str
    """roomtape extension: the livestream stopped."""


class LivestreamWithSession(BaseModel):
    """A livestream and its (latest) session."""

    livestream: LivestreamOut
    session: LivestreamSessionOut | None = None


class LivestreamSessions(BaseModel):
    """``data`` of "livestream session for livestream id"."""

    livestream: LivestreamOut
    session: LivestreamSessionOut | None = None
    sessions: list[LivestreamSessionOut]
    """roomtape extension: the page of sessions (one per start: a livestream has one)."""
    paging: Paging


class LivestreamList(BaseModel):
    """Response of "get all livestreams"."""

    success: bool = True
    data: list[LivestreamOut]
    paging: Paging


class AnalyticsOut(BaseModel):
    """Livestream sessions and their seconds."""

    count: int
    total_ingest_seconds: int
    total_viewer_seconds: int


class AnalyticsDay(AnalyticsOut):
    """One day of the livestream analytics."""

    date: str


class VideoConfig(BaseModel):
    """``video_config`` of a start: the stream's picture size (even, 16..3840 by 16..2160)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    width: int | None = Field(None, ge=16, le=3840)
    height: int | None = Field(None, ge=16, le=2160)


class LivestreamStart(BaseModel):
    """Body of "start livestreaming a meeting" (``LivestreamStartLivestreamingAMeetingParams``)."""

    model_config = ConfigDict(extra="ignore")

    name: Annotated[str, StringConstraints(max_length=255, pattern=NO_NUL)] | None = None
    video_config: VideoConfig | None = None
    rtmp_url: Annotated[str, StringConstraints(max_length=2048, pattern=NO_NUL)] | None = None
    """roomtape extension: push to this RTMP(S) URL; default the meeting's
    ``recording_config.live_streaming_config.rtmp_url``; neither: HLS only."""


def service_of(request: Request) -> LivestreamService:
    """The process's livestream service (503 if it is not running)."""
    service = get_context(request).livestream_service
    if service is None:
        raise Unavailable("the livestream service is not running")
    return service


def livestream_out(service: LivestreamService, row: Livestream) -> LivestreamOut:
    """A livestream row as the API returns it, with a fresh playback URL."""
    return LivestreamOut(
        id=row.id,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ingest_server=row.ingest_server,
        meeting_id=row.meeting_id,
        name=row.name,
        playback_url=service.playback_url(row.id) if row.width else None,
        status=row.status,
        start_reason=row.start_reason,
        rtmp=service.engine.rtmp_state(row.id),
    )


def session_out(run: LivestreamSession) -> LivestreamSessionOut:
    """A livestream session row as the API returns it."""
    return LivestreamSessionOut(
        id=run.id,
        livestream_id=run.livestream_id,
        created_at=run.created_at,
        updated_at=run.updated_at,
        invoked_time=run.invoked_time,
        started_time=run.started_time,
        stopped_time=run.stopped_time,
        ingest_seconds=run.ingest_seconds,
        viewer_seconds=run.viewer_seconds,
        err_message=run.err_message,
    )


async def _own(db: AsyncSession, app: App, livestream_id: str) -> Livestream:
    row = await q.app_livestream(db, app.id, livestream_id)
    if row is None:
        raise NotFound("livestream not found")
    return row


@router.post(
    "/meetings/{meeting_id}/livestreams",
    response_model=Envelope[StartedOut],
    status_code=201,
    summary="Start livestreaming a meeting",
)
async def start_livestreaming_a_meeting(
    meeting_id: MeetingId,
    body: LivestreamStart,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> Envelope[StartedOut]:
    """Stream the meeting's live session: HLS at ``playback_url``, and a push to the RTMP URL if one is set.

    400: a bad size, an RTMP URL that is not ``rtmp://``/``rtmps://``, resolves to a private address, or does
    not accept connections; 409: nobody is in the meeting, or it streams already. Nothing is started then.
    """
    meeting = await get_meeting(db, app, meeting_id)
    await db.close()
    service = service_of(request)
    video = body.video_config or VideoConfig()
    row = await service.start(meeting, name=body.name, width=video.width, height=video.height, rtmp_url=body.rtmp_url)
    return Envelope(
        data=StartedOut(
            id=row.id,
            status=row.status,
            playback_url=service.playback_url(row.id),
            ingest_server=row.ingest_server,
            meeting_id=row.meeting_id,
            name=row.name,
        )
    )


@router.post(
    "/meetings/{meeting_id}/active-livestream/stop",
    response_model=Envelope[StoppedOut],
    summary="Stop livestreaming a meeting",
)
async def stop_livestreaming_a_meeting(
    meeting_id: MeetingId, request: Request, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[StoppedOut]:
    """Stop the meeting's livestream: the last seconds are streamed, the playlist ends; answers once IDLE."""
    meeting = await get_meeting(db, app, meeting_id)
    await db.close()
    livestream_id = await service_of(request).stop(meeting.id)
    return Envelope(data=StoppedOut(message="livestream stopped", id=livestream_id))


@router.get(
    "/meetings/{meeting_id}/active-livestream",
    response_model=Envelope[LivestreamOut],
    summary="Get the meeting's active livestream",
)
async def get_meeting_active_livestreams(
    meeting_id: MeetingId, request: Request, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[LivestreamOut]:
    """The meeting's INVOKED or LIVE livestream; 404 if none."""
    meeting = await get_meeting(db, app, meeting_id)
    row = await q.running_livestream(db, meeting.id)
    if row is None:
        raise NotFound(f"meeting {meeting.id} has no active livestream")
    return Envelope(data=livestream_out(service_of(request), row))


@router.get("/livestreams", response_model=LivestreamList, summary="List livestreams")
async def get_all_livestreams(
    request: Request,
    page: Page = Depends(),
    status: LivestreamStatus | None = Query(None, description="Only this status"),
    start_time: str | None = TimeQuery("Created at or after (ISO 8601)"),
    end_time: str | None = TimeQuery("Created at or before (ISO 8601)"),
    sort_order: Literal["ASC", "DSC"] = "DSC",
    exclude_meetings: bool = Query(False, description="Leave out the livestreams of meetings (all of roomtape's)"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> LivestreamList:
    """The app's livestreams, newest first unless ``sort_order=ASC``."""
    service = service_of(request)
    if exclude_meetings:  # every roomtape livestream streams a meeting
        return LivestreamList(data=[], paging=paging(0, page.offset, 0))
    where = q.LivestreamFilter(
        app_id=app.id,
        statuses=[status] if status else None,
        created_from=parse_time("start_time", start_time),
        created_to=parse_time("end_time", end_time),
    )
    rows, total = await q.list_livestreams(
        db, where, ascending=sort_order == "ASC", offset=page.offset, limit=page.per_page
    )
    data = [livestream_out(service, r) for r in rows]
    return LivestreamList(data=data, paging=paging(total, page.offset, len(data)))


@router.get(
    "/livestreams/sessions/{livestream_session_id}",
    response_model=Envelope[LivestreamSessionOut],
    summary="Get a livestream session",
)
async def get_livestream_session_details_for_session_id(
    livestream_session_id: ObjectId, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[LivestreamSessionOut]:
    """One livestream session of the app."""
    run = await q.app_livestream_session(db, app.id, livestream_session_id)
    if run is None:
        raise NotFound("livestream session not found")
    return Envelope(data=session_out(run))


@router.get(
    "/livestreams/{livestream_id}",
    response_model=Envelope[LivestreamSessions],
    summary="Get a livestream and its sessions",
)
async def get_livestream_session_for_livestream_id(
    livestream_id: ObjectId,
    request: Request,
    page: Page = Depends(),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> Envelope[LivestreamSessions]:
    """The livestream, its latest session (``session``) and a page of its sessions."""
    row = await _own(db, app, livestream_id)
    run = await q.session_of(db, row.id)
    runs = [run] if run is not None else []
    shown = runs[page.offset : page.offset + page.per_page]
    return Envelope(
        data=LivestreamSessions(
            livestream=livestream_out(service_of(request), row),
            session=session_out(run) if run is not None else None,
            sessions=[session_out(r) for r in shown],
            paging=paging(len(runs), page.offset, len(shown)),
        )
    )


@router.get(
    "/livestreams/{livestream_id}/active-livestream-session",
    response_model=Envelope[LivestreamWithSession],
    summary="Get a livestream's active session",
)
async def get_active_livestreams_for_livestream_id(
    livestream_id: ObjectId, request: Request, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[LivestreamWithSession]:
    """The livestream and its session while it is INVOKED or LIVE; 404 once it ended."""
    row = await _own(db, app, livestream_id)
    if row.status not in q.RUNNING:
        raise NotFound(f"livestream {row.id} is {row.status}: no active session")
    run = await q.session_of(db, row.id)
    return Envelope(
        data=LivestreamWithSession(
            livestream=livestream_out(service_of(request), row),
            session=session_out(run) if run is not None else None,
        )
    )


def _epoch(name: str, value: int | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidInput(f"{name}: not a Unix time in seconds: {value}") from exc


def _epoch_query(description: str) -> Any:
    return Query(None, ge=0, le=253402300799, description=description)


@router.get(
    "/analytics/livestreams/overall",
    response_model=Envelope[AnalyticsOut],
    summary="Livestream analytics of the app",
)
async def get_livestream_analytics_complete(
    start_time: int | None = _epoch_query("From (Unix time in seconds, by the session's invocation)"),
    end_time: int | None = _epoch_query("Until (Unix time in seconds)"),
    filters: str | None = Query(None, max_length=1024, description="Accepted for compatibility; unused"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> Envelope[AnalyticsOut]:
    """Livestream sessions invoked in the period, their ingest seconds and viewer seconds."""
    got = await q.totals(db, app.id, _epoch("start_time", start_time), _epoch("end_time", end_time))
    return Envelope(
        data=AnalyticsOut(
            count=got.count,
            total_ingest_seconds=round(got.ingest_seconds),
            total_viewer_seconds=round(got.viewer_seconds),
        )
    )


@router.get(
    "/analytics/livestreams/daywise",
    response_model=Envelope[list[AnalyticsDay]],
    summary="Day-wise livestream analytics of the app",
)
async def get_livestream_analytics_daywise(
    start_time: int | None = _epoch_query("From (Unix time in seconds, by the session's invocation)"),
    end_time: int | None = _epoch_query("Until (Unix time in seconds)"),
    filters: str | None = Query(None, max_length=1024, description="Accepted for compatibility; unused"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> Envelope[list[AnalyticsDay]]:
    """:func:`get_livestream_analytics_complete` per UTC day (days with a livestream session only)."""
    days = await q.daywise_totals(db, app.id, _epoch("start_time", start_time), _epoch("end_time", end_time))
    return Envelope(
        data=[
            AnalyticsDay(
                date=day.isoformat(),
                count=got.count,
                total_ingest_seconds=round(got.ingest_seconds),
                total_viewer_seconds=round(got.viewer_seconds),
            )
            for day, got in days.items()
        ]
    )
