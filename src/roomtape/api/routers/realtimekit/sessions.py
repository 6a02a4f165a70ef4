"""``/accounts/{account_id}/realtime/kit/{app_id}/sessions``: past and live sessions and who was in them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import get_context, get_db
from roomtape.api.routers.downloads import signer_of
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import (
    Page,
    TimeQuery,
    iso,
    parse_time,
    session_out,
    session_participant_out,
)
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Paging, paging
from roomtape.db.chat import chat_csv, list_session_chat
from roomtape.db.models import App, Meeting, Session, SessionSummary, utcnow
from roomtape.db.sessions import app_peer, latest_stay, list_app_sessions, session_with_meeting, stays_in_session
from roomtape.errors import Conflict, NotFound
from roomtape.jobs.summarize import request_summary
from roomtape.storage.exports import publish_export

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/sessions", tags=["sessions"])


class SessionListResponse(BaseModel):
    """Response of "list sessions"."""

    success: bool = True
    data: s.SessionList
    paging: Paging


class SessionResponse(BaseModel):
    """Response of "get session"."""

    success: bool = True
    data: s.SessionOut


class SessionParticipantsResponse(BaseModel):
    """Response of "list session participants"."""

    success: bool = True
    data: s.SessionParticipantList
    paging: Paging


class SessionParticipantResponse(BaseModel):
    """Response of "get session participant"."""

    success: bool = True
    data: s.SessionParticipantDetail


class SessionChat(BaseModel):
    """Where to download a session's chat (RealtimeKit's shape)."""

    chat_download_url: str
    """Signed URL of the chat export (CSV)."""
    chat_download_url_expiry: str
    """When the URL stops working (ISO 8601)."""


class SessionChatResponse(BaseModel):
    """Response of "get session chat"."""

    success: bool = True
    data: SessionChat


class SummaryJob(BaseModel):
    """A summary that was asked for (RealtimeKit's shape; ``status`` is the job's)."""

    session_id: str
    status: Literal["PENDING", "RUNNING", "COMPLETED", "FAILED"]


class SummaryJobResponse(BaseModel):
    """Response of "generate summary of transcripts"."""

    success: bool = True
    data: SummaryJob


class SessionSummaryLink(BaseModel):
    """Where to download a session's summary (RealtimeKit's shape, camelCase as in its API)."""

    session_id: str = Field(serialization_alias="sessionId")
    summary_download_url: str = Field(serialization_alias="summaryDownloadUrl")
    """Signed URL of the summary (plain text)."""
    summary_download_url_expiry: str = Field(serialization_alias="summaryDownloadUrlExpiry")
    """When the URL stops working (ISO 8601)."""
    backend: str | None = None
    """Which summarizer wrote it (roomtape addition): ``extractive`` or ``openai-compatible/<model>``."""


class SessionSummaryResponse(BaseModel):
    """Response of "get session summary"."""

    success: bool = True
    data: SessionSummaryLink


async def get_session(db: AsyncSession, app: App, session_id: str) -> tuple[Session, Meeting]:
    """The app's session and its meeting, or 404."""
    found = await session_with_meeting(db, app.id, session_id)
    if found is None:
        raise NotFound("session not found")
    return found


@router.get("", response_model=SessionListResponse, summary="List sessions")
async def list_sessions(
    page: Page = Depends(),
    associated_id: str | None = Query(None, max_length=64, pattern=NO_NUL, description="Only sessions of this meeting"),
    search: str | None = Query(
        None, max_length=255, pattern=NO_NUL, description="Session id, or part of the meeting title"
    ),
    start_time: str | None = TimeQuery("Started at or after (ISO 8601)"),
    end_time: str | None = TimeQuery("Started at or before (ISO 8601)"),
    status: Literal["LIVE", "ENDED"] | None = None,
    participants: str | None = Query(
        None, max_length=255, pattern=NO_NUL, description="Accepted for compatibility; unused"
    ),
    sort_by: Literal["minutesConsumed", "createdAt"] = "createdAt",
    sort_order: Literal["ASC", "DESC"] = "DESC",
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionListResponse:
    """The app's sessions, newest first unless sorted otherwise."""
    rows, total = await list_app_sessions(
        db,
        app.id,
        meeting_id=associated_id,
        search=search,
        started_from=parse_time("start_time", start_time),
        started_to=parse_time("end_time", end_time),
        status=status,
        by_minutes=sort_by == "minutesConsumed",
        ascending=sort_order == "ASC",
        offset=page.offset,
        limit=page.per_page,
    )
    now = utcnow()
    data = [session_out(sess, meeting, now) for sess, meeting in rows]
    return SessionListResponse(data=s.SessionList(sessions=data), paging=paging(total, page.offset, len(data)))


class PeerProducerStats(BaseModel):
    """One published track as the server received it (RealtimeKit's ``*_producer`` items).

    ``bytes_sent``/``packets_sent`` are what reached the server from the peer (payload bytes through the tap;
    RTP packets received plus lost); ``nack_count`` and ``nacked_packets`` are roomtape additions.
    """

    producer_id: str
    mid: str | None = None
    ssrc: int | None = None
    bytes_sent: int
    packets_sent: int
    packets_lost: int
    jitter: float | None = None
    frames_encoded: int | None = None
    key_frames_encoded: int | None = None
    pli_count: int | None = None
    nack_count: int
    nacked_packets: int
    timestamp: str | None = None


class PacketLoss(BaseModel):
    """Loss over the whole stay."""

    avg: float
    """Lost packets over sent packets, in per cent."""


class Cumulative(BaseModel):
    """Per kind, over every track of that kind."""

    packet_loss: PacketLoss


class PeerQuality(BaseModel):
    """RealtimeKit's ``peer_report.quality``: the peer's producers by kind (consumers are not measured)."""

    audio_producer: list[PeerProducerStats] = []
    audio_producer_cumulative: Cumulative | None = None
    video_producer: list[PeerProducerStats] = []
    video_producer_cumulative: Cumulative | None = None
    screenshare_audio_producer: list[PeerProducerStats] = []
    screenshare_audio_producer_cumulative: Cumulative | None = None
    screenshare_video_producer: list[PeerProducerStats] = []
    screenshare_video_producer_cumulative: Cumulative | None = None


class PeerReport(BaseModel):
    """RealtimeKit's ``peer_report``; ``metadata`` (devices, browser, IP) is not collected: empty."""

    metadata: dict[str, Any] = {}
    quality: PeerQuality | None = None


class PeerParticipant(s.SessionParticipantOut):
    """A peer (one stay of a participant) with its report."""

    session_id: str
    peer_report: PeerReport


class PeerData(BaseModel):
    """``data`` of the peer report."""

    participant: PeerParticipant


class PeerDataResponse(BaseModel):
    """Response of "get participant data from peer id"."""

    success: bool = True
    data: PeerData


_QUALITY_FIELD = {
    "audio": "audio_producer",
    "video": "video_producer",
    "screen_audio": "screenshare_audio_producer",
    "screen_video": "screenshare_video_producer",
}


def peer_quality(tracks: list[dict[str, Any]]) -> PeerQuality:
    """The quality section from the room's per-track counters (``Room.track_stats``)."""
    quality = PeerQuality()
    for t in tracks:
        video = t.get("kind") in ("video", "screen_video")
        item = PeerProducerStats(
            producer_id=str(t.get("track_id", "")),
            mid=t.get("mid"),
            ssrc=t.get("ssrc"),
            bytes_sent=int(t.get("bytes", 0)),
            packets_sent=int(t.get("packets_received", 0)) + int(t.get("packets_lost", 0)),
            packets_lost=int(t.get("packets_lost", 0)),
            jitter=t.get("jitter"),
            frames_encoded=int(t.get("frames", 0)) if video else None,
            key_frames_encoded=int(t.get("keyframes", 0)) if video else None,
            pli_count=int(t.get("plis_sent", 0)) if video else None,
            nack_count=int(t.get("nacks_sent", 0)),
            nacked_packets=int(t.get("nacked_packets", 0)),
            timestamp=iso(datetime.fromtimestamp(float(t["at"]), UTC)) if t.get("at") else None,
        )
        getattr(quality, _QUALITY_FIELD.get(str(t.get("kind")), "audio_producer")).append(item)
    for kind_field in _QUALITY_FIELD.values():
        items: list[PeerProducerStats] = getattr(quality, kind_field)
        sent = sum(i.packets_sent for i in items)
        if items:
            loss = 100.0 * sum(i.packets_lost for i in items) / sent if sent else 0.0
            setattr(quality, f"{kind_field}_cumulative", Cumulative(packet_loss=PacketLoss(avg=round(loss, 3))))
    return quality


@router.get(
    "/peer-report/{peer_id}",
    response_model=PeerDataResponse,
    summary="Get participant data from peer id",
)
async def get_participant_data_from_peer_id(
    peer_id: str,
    request: Request,
    filters: Literal["device_info", "ip_information", "precall_network_information", "events", "quality_stats"]
    | None = None,
    include_peer_events: bool = False,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> PeerDataResponse:
    """A peer's stay (``peer_id`` is the stay id of the session's participant list) with its report.

    ``quality`` holds what the media plane counted for each track the peer published: bytes, RTP packets
    received and lost, jitter, NACKs and PLIs it sent — live while the peer is in the room, as kept at its
    leave afterwards. ``filters=events`` (or ``include_peer_events``) adds the join/leave events;
    ``quality_stats`` returns only the quality; the device, IP and pre-call filters have nothing collected.
    """
    found = await app_peer(db, app.id, peer_id)
    if found is None:
        raise NotFound("peer not found")
    stay, sess = found
    tracks = stay.media_stats
    if stay.left_at is None:
        live = get_context(request).media.get(sess.meeting_id)
        if live is not None:
            tracks = await live.room.track_stats(stay.participant_id)
    quality = peer_quality(tracks or []) if filters in (None, "quality_stats") else None
    events = include_peer_events or filters == "events"
    participant = session_participant_out(stay, events)
    return PeerDataResponse(
        data=PeerData(
            participant=PeerParticipant(
                **participant.model_dump(), session_id=sess.id, peer_report=PeerReport(quality=quality)
            )
        )
    )


@router.get("/{session_id}", response_model=SessionResponse, summary="Get a session")
async def get_session_details(
    session_id: str,
    include_breakout_rooms: bool = False,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionResponse:
    """One session."""
    sess, meeting = await get_session(db, app, session_id)
    return SessionResponse(data=session_out(sess, meeting))


@router.get(
    "/{session_id}/participants",
    response_model=SessionParticipantsResponse,
    summary="List session participants",
)
async def list_session_participants(
    session_id: str,
    page: Page = Depends(),
    include_peer_events: bool = False,
    search: str | None = Query(None, max_length=255, pattern=NO_NUL, description="Part of the display name, or an id"),
    sort_by: Literal["joinedAt", "duration"] = "joinedAt",
    sort_order: Literal["ASC", "DESC"] = "ASC",
    view: Literal["raw", "consolidated"] = "raw",
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionParticipantsResponse:
    """Everyone who was in the session: one row per stay (``raw``) or per participant (``consolidated``)."""
    sess, _ = await get_session(db, app, session_id)
    stays = await stays_in_session(db, sess.id, search)
    now = utcnow()
    out = [session_participant_out(st, include_peer_events, now) for st in stays]
    if view == "consolidated":
        out = _consolidate(out)
    key = (lambda p: p.duration) if sort_by == "duration" else (lambda p: p.joined_at)
    out.sort(key=key, reverse=sort_order == "DESC")
    total = len(out)
    page_rows = out[page.offset : page.offset + page.per_page]
    return SessionParticipantsResponse(
        data=s.SessionParticipantList(participants=page_rows),
        paging=paging(total, page.offset, len(page_rows)),
    )


def _consolidate(stays: list[s.SessionParticipantOut]) -> list[s.SessionParticipantOut]:
    """One row per participant: first join, last leave, total duration, all events."""
    merged: dict[str, s.SessionParticipantOut] = {}
    for st in sorted(stays, key=lambda p: p.joined_at):
        prev = merged.get(st.user_id)
        if prev is None:
            merged[st.user_id] = st.model_copy()
            continue
        prev.duration = round(prev.duration + st.duration, 4)
        prev.left_at = st.left_at if prev.left_at is not None else None
        if prev.peer_events is not None and st.peer_events is not None:
            prev.peer_events = prev.peer_events + st.peer_events
    return list(merged.values())


@router.get(
    "/{session_id}/participants/{participant_id}",
    response_model=SessionParticipantResponse,
    summary="Get a session participant",
)
async def get_session_participant(
    session_id: str,
    participant_id: str,
    include_peer_events: bool = False,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionParticipantResponse:
    """A participant's stay in the session, by stay (peer) id or participant id."""
    sess, _ = await get_session(db, app, session_id)
    stay = await latest_stay(db, sess.id, participant_id)
    if stay is None:
        raise NotFound("participant not found in this session")
    return SessionParticipantResponse(
        data=s.SessionParticipantDetail(participant=session_participant_out(stay, include_peer_events))
    )


@router.get("/{session_id}/chat", response_model=SessionChatResponse, summary="Get a session's chat download URL")
async def get_session_chat(
    session_id: str,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionChatResponse:
    """A signed, expiring URL of the session's chat as CSV (kept when the meeting has ``persist_chat``).

    404 when nothing of the session's chat was kept: its meeting did not persist chat, or no one wrote.
    """
    sess, meeting = await get_session(db, app, session_id)
    rows = await list_session_chat(db, sess.id)
    if not rows:
        why = "no one wrote" if meeting.persist_chat else "its meeting does not persist_chat"
        raise NotFound(f"this session has no stored chat: {why}")
    await db.close()
    ctx = get_context(request)
    signed = await publish_export(
        ctx.settings,
        signer_of(ctx),
        app_id=app.id,
        session_id=sess.id,
        kind="chat",
        file_name="chat.csv",
        content=chat_csv(rows),
        expires_in=ctx.settings.download_url_ttl_secs,
    )
    return SessionChatResponse(
        data=SessionChat(chat_download_url=signed.url, chat_download_url_expiry=iso(signed.expires_at))
    )


@router.post(
    "/{session_id}/summary",
    response_model=SummaryJobResponse,
    status_code=202,
    summary="Generate the summary of a session's transcript",
)
async def generate_summary_of_transcripts(
    session_id: str,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SummaryJobResponse:
    """Queue the summary (again); it is written by the jobs runner and announced with ``meeting.summary``."""
    sess, _ = await get_session(db, app, session_id)
    row = await db.get(SessionSummary, sess.id)
    if row is not None and row.status in ("PENDING", "RUNNING"):
        return SummaryJobResponse(data=SummaryJob(session_id=sess.id, status=row.status))
    request_summary(db, row, sess)
    await db.commit()
    jobs = get_context(request).jobs
    if jobs is not None:
        await jobs.submit_summary(sess.id)
    return SummaryJobResponse(data=SummaryJob(session_id=sess.id, status="PENDING"))


@router.get(
    "/{session_id}/summary",
    response_model=SessionSummaryResponse,
    response_model_by_alias=True,
    summary="Get a session's summary download URL",
)
async def get_session_summary(
    session_id: str,
    request: Request,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> SessionSummaryResponse:
    """A signed, expiring URL of the summary as plain text.

    404 when no summary was asked for; 409 while it is being written or when it failed (with the reason).
    """
    sess, _ = await get_session(db, app, session_id)
    row = await db.get(SessionSummary, sess.id)
    if row is None:
        raise NotFound("this session has no summary: its meeting does not summarize_on_end and none was requested")
    if row.status != "COMPLETED" or row.text is None:
        why = f": {row.error}" if row.error else ""
        raise Conflict(f"the summary is {row.status}{why}")
    text, backend = row.text, row.backend
    await db.close()
    ctx = get_context(request)
    signed = await publish_export(
        ctx.settings,
        signer_of(ctx),
        app_id=app.id,
        session_id=sess.id,
        kind="summary",
        file_name="summary.txt",
        content=text.encode("utf-8"),
        expires_in=ctx.settings.download_url_ttl_secs,
    )
    return SessionSummaryResponse(
        data=SessionSummaryLink(
            session_id=sess.id,
            summary_download_url=signed.url,
            summary_download_url_expiry=iso(signed.expires_at),
            backend=backend,
        )
    )
