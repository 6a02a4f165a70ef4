"""Transcripts over HTTP.

- RealtimeKit ``GET /accounts/{account_id}/realtime/kit/{app_id}/sessions/{session_id}/transcript``: a signed
  download URL, as the Cloudflare SDK's ``get_session_transcripts`` expects (``format`` SRT | VTT | JSON | CSV,
  and LIVEKIT for LiveKit's ``ChatContext.to_dict()`` shape).
- ``GET /v1/sessions/{session_id}/transcript`` and ``GET /v1/recordings/{recording_id}/transcript``: the
  transcript itself (``format`` json | livekit | vtt | srt | csv), with an API token or a signed link.
- ``POST /v1/sessions/{session_id}/transcript``: agents outside a meeting send ``conversation_item_added`` /
  ``user_input_transcribed`` events (one, a list, or ``{"events": [...], "clock_offset": s}``).
- ``POST /observability/recordings/v0``: LiveKit Agents' session upload (``LIVEKIT_OBSERVABILITY_URL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import jwt
from fastapi import APIRouter, Body, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of, bearer_token, get_caller
from roomtape.api.context import ServerContext, get_context, get_db
from roomtape.api.routers.realtimekit.convert import iso
from roomtape.db.lookup import app_meeting, app_session, meeting_titled, visible_recording, visible_session
from roomtape.db.models import App, Meeting, Recording, Session, SessionSummary
from roomtape.db.transcript_segments import session_progress
from roomtape.domain.tokens import looks_like_jwt
from roomtape.errors import Forbidden, InvalidInput, NotFound, RoomtapeError, Unauthenticated
from roomtape.jobs.summarize import request_summary
from roomtape.jobs.upload import local_dir
from roomtape.transcripts import export, livekit
from roomtape.transcripts.clock import ClockOffset
from roomtape.transcripts.events import TranscriptBatch, TranscriptEvent
from roomtape.transcripts.ingest import ingest, on_session_ended
from roomtape.transcripts.links import Scope, TranscriptLinks
from roomtape.transcripts.model import TranscriptItem
from roomtape.transcripts.store import count_session, list_recording, list_session, recording_span

router = APIRouter(tags=["transcripts"])

LIVEKIT_AUDIO_NAME = "recording.ogg"
"""The file name of a LiveKit Agents upload's audio in its recording."""

RealtimeKitFormat = Literal["SRT", "VTT", "JSON", "CSV", "LIVEKIT", "srt", "vtt", "json", "csv", "livekit"]
Format = Literal["json", "livekit", "vtt", "srt", "csv"]

_EXPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The transcript in the requested format",
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "text/vtt": {"schema": {"type": "string"}},
            "application/x-subrip": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    },
}


def links_of(ctx: ServerContext) -> TranscriptLinks:
    """The server's transcript link signer."""
    return TranscriptLinks(ctx.secret_key, ctx.settings.resolved_public_url)


# --- RealtimeKit -------------------------------------------------------------------------------------------


class TranscriptLink(BaseModel):
    """Where to download a session's transcript (the Cloudflare SDK's ``Data``)."""

    sessionId: str
    transcript_download_url: str
    transcript_download_url_expiry: str
    format: str
    """The format the URL serves (roomtape addition)."""


class TranscriptLinkResponse(BaseModel):
    """Response of "get session transcript"."""

    success: bool = True
    data: TranscriptLink


@router.get(
    "/accounts/{account_id}/realtime/kit/{app_id}/sessions/{session_id}/transcript",
    response_model=TranscriptLinkResponse,
    summary="Get a session's transcript download URL",
)
async def get_session_transcript(
    session_id: str,
    request: Request,
    format: RealtimeKitFormat = Query("CSV", description="SRT | VTT | JSON | CSV, or LIVEKIT (ChatContext JSON)"),
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> TranscriptLinkResponse:
    """A signed, expiring URL of the session's transcript; 404 when the session has none yet."""
    session = await app_session(db, app.id, session_id)
    if session is None:
        raise NotFound("session not found")
    if not await count_session(db, session.id):
        raise NotFound("this session has no transcript")
    ctx = get_context(request)
    fmt = format.lower()
    url, expiry = links_of(ctx).sign("sessions", session.id, fmt, ctx.settings.download_url_ttl_secs)
    return TranscriptLinkResponse(
        data=TranscriptLink(
            sessionId=session.id, transcript_download_url=url, transcript_download_url_expiry=iso(expiry), format=fmt
        )
    )


# --- exports -----------------------------------------------------------------------------------------------


async def _authorize(
    request: Request, db: AsyncSession, scope: Scope, object_id: str, fmt: str, exp: str | None, sig: str | None
) -> str | None:
    """The caller's account id (API token), or None for a valid signed link.

    Raises:
        Unauthenticated: A signed link that is not valid or has expired, or no link and no valid API token.
    """
    if exp is not None or sig is not None:
        links_of(get_context(request)).verify(scope, object_id, fmt, exp or "", sig or "")
        return None
    return (await get_caller(request, db)).account_id


def _render(
    fmt: Format,
    items: list[TranscriptItem],
    *,
    session_id: str,
    origin: float,
    recording_id: str | None,
    transcription: dict[str, Any] | None = None,
) -> Response:
    if fmt == "json":
        rich = export.to_json(
            items, session_id=session_id, origin_epoch=origin, recording_id=recording_id, transcription=transcription
        )
        body = json.dumps(rich)
    elif fmt == "livekit":
        body = json.dumps(export.to_livekit(items))
    elif fmt == "vtt":
        body = export.to_webvtt(items, origin)
    elif fmt == "srt":
        body = export.to_srt(items, origin)
    else:
        body = export.to_csv(items, origin)
    return Response(body, media_type=export.MEDIA_TYPES[fmt])


async def _session_for(db: AsyncSession, session_id: str, account_id: str | None) -> Session:
    session = await visible_session(db, session_id, account_id)
    if session is None:
        raise NotFound("session not found")
    return session


@router.get(
    "/v1/sessions/{session_id}/transcript",
    summary="Export a session's transcript",
    response_class=Response,
    responses=_EXPORT_RESPONSES,
)
async def export_session_transcript(
    session_id: str,
    request: Request,
    format: Format = Query("json", description="json | livekit | vtt | srt | csv"),
    include_interim: bool = Query(False, description="Also interim speech-to-text results (json, livekit)"),
    exp: str | None = Query(None, max_length=32, description="Signed link: expiry"),
    sig: str | None = Query(None, max_length=128, description="Signed link: signature"),
    db: AsyncSession = Depends(get_db),
) -> Response:
    """The session's transcript, times on the session clock (0 = the session's start)."""
    account_id = await _authorize(request, db, "sessions", session_id, format, exp, sig)
    session = await _session_for(db, session_id, account_id)
    items = await list_session(db, session.id, include_interim=include_interim and format in ("json", "livekit"))
    progress = await session_progress(db, session.id) if format == "json" else None  # live transcription
    origin = session.started_at.timestamp()
    return _render(format, items, session_id=session.id, origin=origin, recording_id=None, transcription=progress)


@router.get(
    "/v1/recordings/{recording_id}/transcript",
    summary="Export a recording's transcript",
    response_class=Response,
    responses=_EXPORT_RESPONSES,
)
async def export_recording_transcript(
    recording_id: str,
    request: Request,
    format: Format = Query("json", description="json | livekit | vtt | srt | csv"),
    exp: str | None = Query(None, max_length=32, description="Signed link: expiry"),
    sig: str | None = Query(None, max_length=128, description="Signed link: signature"),
    db: AsyncSession = Depends(get_db),
) -> Response:
    """What was said while the recording ran, times on the recording's clock (0 = its first frame)."""
    account_id = await _authorize(request, db, "recordings", recording_id, format, exp, sig)
    recording = await visible_recording(db, recording_id, account_id)
    if recording is None:
        raise NotFound("recording not found")
    session = await db.get(Session, recording.session_id) if recording.session_id else None
    items = await list_recording(db, recording, session.started_at.timestamp()) if session else []
    origin = recording_span(recording)[0]
    return _render(format, items, session_id=recording.session_id or "", origin=origin, recording_id=recording.id)


# --- ingest ------------------------------------------------------------------------------------------------


class IngestResult(BaseModel):
    """What an ingest stored."""

    session_id: str
    stored: int
    item_ids: list[str]


class IngestResponse(BaseModel):
    """Response of "add transcript items"."""

    success: bool = True
    data: IngestResult


IngestBody = Annotated[
    TranscriptBatch | list[TranscriptEvent] | TranscriptEvent,
    Body(description="One event, a list of events, or {events, clock_offset}"),
]


@router.post(
    "/v1/sessions/{session_id}/transcript",
    response_model=IngestResponse,
    status_code=201,
    summary="Add transcript items to a session",
)
async def add_session_transcript(
    session_id: str,
    body: IngestBody,
    request: Request,
    db: AsyncSession = Depends(get_db),
) -> IngestResponse:
    """Store ``conversation_item_added`` / ``user_input_transcribed`` events; a bad one stores nothing.

    Items for a session that has ended queue ``meeting.transcript`` again (the next ``revision``), and write
    its summary again if it has one.
    """
    caller = await get_caller(request, db)
    session = await _session_for(db, session_id, caller.account_id)
    if isinstance(body, TranscriptBatch):
        events, offset = body.events, ClockOffset(body.clock_offset)
    else:
        events, offset = (body if isinstance(body, list) else [body]), ClockOffset()
    if not events:
        raise InvalidInput("no transcript events")
    if len(events) > 500:
        raise InvalidInput("at most 500 events per request")
    items = await ingest(db, session, events, offset=offset, source="api")
    resummarize = False
    if session.status == "ENDED":
        # Late items (the session has ended): meeting.transcript again, as a new revision.
        ctx = get_context(request)
        await on_session_ended(db, session.id, links=links_of(ctx), link_ttl_secs=ctx.settings.download_url_ttl_secs)
        summary = await db.get(SessionSummary, session.id)
        if summary is not None and summary.status in ("COMPLETED", "FAILED"):
            request_summary(db, summary, session)
            resummarize = True
    await db.commit()
    jobs = get_context(request).jobs
    if resummarize and jobs is not None:
        await jobs.submit_summary(session.id)
    return IngestResponse(data=IngestResult(session_id=session.id, stored=len(items), item_ids=[i.id for i in items]))


# --- LiveKit Agents upload -----------------------------------------------------------------------------------


def parse_multipart(body: bytes, content_type: str) -> dict[str, bytes]:
    """The named parts of a ``multipart/form-data`` body (RFC 7578); a later part of one name wins.

    Raises:
        InvalidInput: Not multipart, no boundary, or a part without a name.
    """
    kind, _, params = content_type.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise InvalidInput("expected a multipart/form-data body")
    boundary = ""
    for param in params.split(";"):
        key, _, value = param.strip().partition("=")
        if key.lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        raise InvalidInput("multipart body without a boundary")
    chunks = (b"\r\n" + body).split(b"\r\n--" + boundary.encode())
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise InvalidInput("malformed multipart body")
    parts: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        head, sep, data = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise InvalidInput("malformed multipart part")
        name = ""
        for line in head.decode("latin-1").split("\r\n"):
            header, _, value = line.partition(":")
            if header.strip().lower() == "content-disposition":
                for param in value.split(";"):
                    key, _, v = param.strip().partition("=")
                    if key.lower() == "name":
                        name = v.strip().strip('"')
        if not name:
            raise InvalidInput("multipart part without a name")
        parts[name] = data
    return parts


async def livekit_app(request: Request, db: AsyncSession) -> App:
    """The app whose API secret signed the upload's JWT (LiveKit's ``iss`` = API key = roomtape app id).

    Raises:
        Unauthenticated: No JWT, an unknown app, a bad signature or an expired token.
        Forbidden: The token lacks LiveKit's ``observability.write`` grant.
    """
    token = bearer_token(request)
    if not looks_like_jwt(token):
        raise Unauthenticated("expected a JWT signed with the app's API secret (LIVEKIT_API_SECRET)")
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise Unauthenticated("token is not a valid JWT") from exc
    app_id = unverified.get("iss")
    app = await db.get(App, app_id) if isinstance(app_id, str) and app_id else None
    if app is None or not app.api_secret:
        raise Unauthenticated("invalid token: iss must be an app id with an API secret (LIVEKIT_API_KEY)")
    try:
        secret = get_context(request).box.open(app.api_secret)
        claims = jwt.decode(token, secret, algorithms=["HS256"], options={"verify_aud": False})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("token has expired") from exc
    except (jwt.PyJWTError, RoomtapeError) as exc:
        raise Unauthenticated("invalid token signature") from exc
    grants = claims.get("observability")
    if isinstance(grants, dict) and not grants.get("write", False):
        raise Forbidden("token has no observability write grant")
    return app


class LiveKitUploadResult(BaseModel):
    """What a LiveKit Agents upload became."""

    session_id: str
    recording_id: str | None
    meeting_id: str
    items: int
    audio_bytes: int = Field(ge=0)


class LiveKitUploadResponse(BaseModel):
    """Response of the LiveKit Agents upload."""

    success: bool = True
    data: LiveKitUploadResult


async def _meeting_for_room(db: AsyncSession, app: App, header: livekit.RecordingHeader) -> Meeting:
    """The roomtape meeting of a LiveKit room.

    The room's name comes from the header's ``room_name``, else its session summary's ``room`` (what
    ``livekit-agents`` 1.8 sends), else the room's sid. The meeting whose id is that name (an agent in a
    roomtape meeting), else the one meeting kept per LiveKit room name (title ``LiveKit room {name}``), made
    on first upload.
    """
    summary_room = header.session_summary.get("room")
    name = header.room_name or (summary_room if isinstance(summary_room, str) else "") or header.room_id
    if name:
        meeting = await app_meeting(db, app.id, name)
        if meeting is not None:
            return meeting
    title = f"LiveKit room {name}" if name else "LiveKit room"
    meeting = await meeting_titled(db, app.id, title)
    if meeting is None:
        meeting = Meeting(app_id=app.id, title=title, status="INACTIVE")
        db.add(meeting)
        await db.flush()
    return meeting


@router.post(
    "/observability/recordings/v0",
    response_model=LiveKitUploadResponse,
    status_code=201,
    summary="LiveKit Agents session upload",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "header": {"type": "string", "format": "binary"},
                            "chat_history": {"type": "string", "format": "binary"},
                            "audio": {"type": "string", "format": "binary"},
                        },
                        "required": ["header"],
                    }
                }
            },
        }
    },
)
async def livekit_upload(request: Request, db: AsyncSession = Depends(get_db)) -> LiveKitUploadResponse:
    """Store a LiveKit Agents session.

    It becomes an ENDED session of the room's meeting, its chat history transcript items, and its OGG audio
    a composite recording (``recording.ogg``) uploaded to the app's storage like any other, with a download
    URL once UPLOADED. Everything is checked before anything is stored: a bad part is a 400 and leaves
    nothing behind. ``meeting.transcript`` is queued when the chat history has messages.
    """
    app = await livekit_app(request, db)
    parts = parse_multipart(await request.body(), request.headers.get("content-type", ""))
    if "header" not in parts:
        raise InvalidInput("missing the header part")
    header = livekit.parse_header(parts["header"])
    events = livekit.parse_chat_history(parts["chat_history"]) if "chat_history" in parts else []
    audio = parts.get("audio", b"")
    probe = await asyncio.to_thread(livekit.probe_ogg, audio) if audio else None
    now = time.time()
    times = [e.created_at for e in events if e.created_at is not None]
    start = header.start_time or header.room_start_time or (min(times) if times else now)
    if header.duration_ms:
        end = start + header.duration_ms / 1000
    else:
        end = max([start, *times, start + (probe.duration if probe else 0.0)])
    started, ended = datetime.fromtimestamp(start, UTC), datetime.fromtimestamp(end, UTC)

    meeting = await _meeting_for_room(db, app, header)
    session = Session(
        app_id=app.id, meeting_id=meeting.id, status="ENDED", started_at=started, ended_at=ended, created_at=started
    )
    db.add(session)
    await db.flush()
    items = await ingest(db, session, events, source="livekit", now=now)
    ctx = get_context(request)
    recording: Recording | None = None
    target: Path | None = None
    if audio and probe is not None:
        recording = Recording(
            app_id=app.id,
            meeting_id=meeting.id,
            session_id=session.id,
            kind="composite",
            status="UPLOADING",
            invoked_time=started,
            started_time=started,
            stopped_time=ended,
            recording_duration=round(end - start),
            output_file_name=LIVEKIT_AUDIO_NAME,
            file_size=len(audio),
            start_reason={"reason": "API_CALL", "caller": {"name": "livekit-agents"}},
            stop_reason={"reason": "ALL_PEERS_LEFT"},
            config={
                "source": "livekit-agents",
                "room_id": header.room_id,
                "room_name": header.room_name,
                "room_tags": header.room_tags,
                "job_id": header.job_id,
                "agent_name": header.session_summary.get("agent_name"),
                "sdk_version": header.session_summary.get("sdk_version"),
                "audio": {"codec": probe.codec, "channels": probe.channels, "sample_rate": probe.sample_rate},
                "channel_map": {"left": "user", "right": "agent"} if probe.channels == 2 else None,
                # The file is the composite as uploaded: nothing to render before the upload.
                "render": "done",
                "progress": {"fraction": 1.0, "done": True},
            },
        )
        db.add(recording)
        await db.flush()
        target = local_dir(ctx.settings, recording.id) / LIVEKIT_AUDIO_NAME
    await on_session_ended(db, session.id, links=links_of(ctx), link_ttl_secs=ctx.settings.download_url_ttl_secs)
    if target is not None:
        # The file goes where the upload job reads it from; it is removed again if the commit fails.
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(target.name + ".part")
        try:
            await asyncio.to_thread(temp.write_bytes, audio)
            os.replace(temp, target)
            await db.commit()
        except BaseException:
            temp.unlink(missing_ok=True)
            target.unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                target.parent.rmdir()
            raise
        if ctx.jobs is not None and recording is not None:
            await ctx.jobs.submit_upload(recording.id)
    else:
        await db.commit()
    return LiveKitUploadResponse(
        data=LiveKitUploadResult(
            session_id=session.id,
            recording_id=recording.id if recording else None,
            meeting_id=meeting.id,
            items=len(items),
            audio_bytes=len(audio),
        )
    )
