"""Signaling: WHIP for publishing (RFC 9725) and a WebSocket per participant for the room.

``POST /v1/meetings/{meeting_id}/whip`` takes an SDP offer (``application/sdp``, the participant token as
Bearer) and answers ``201 Created`` with the SDP answer and a ``Location`` to ``DELETE`` when leaving. ICE is
not trickled: the answer carries every candidate, and ``PATCH`` is not offered (405).

``GET /v1/meetings/{meeting_id}/ws?token=...`` is the full participant: room events, publishing, and a
server-offered downlink that is renegotiated whenever the others' tracks change. The message protocol is
written down in ``docs/signaling.md``; this module is its reference implementation.

The mapping onto the media plane is thin: :class:`~roomtape.media.presence.Presence` for joins, leaves and
kicks, :class:`~roomtape.media.room.Room` for publishing and mutes, :class:`~roomtape.media.downlink.Downlink`
for receiving. Errors of those layers become HTTP statuses (WHIP) or ``error`` messages and close codes
(WebSocket) here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, cast, get_args

from fastapi import APIRouter, FastAPI, Query, Request, Response, WebSocket
from pydantic import TypeAdapter
from starlette.websockets import WebSocketDisconnect, WebSocketState

from roomtape.api.context import ServerContext, get_context
from roomtape.db.chat import persists_chat, store_chat_message
from roomtape.db.models import Meeting, Participant, Session
from roomtape.db.presets import policy_for
from roomtape.domain.enums import MeetingStatus
from roomtape.domain.presets import PresetPolicy
from roomtape.domain.tokens import verify_participant_token
from roomtape.errors import Conflict, Forbidden, InvalidInput, NotFound, RoomtapeError, Unauthenticated
from roomtape.media.chat import new_chat_message
from roomtape.media.downlink import Downlink, DownlinkOffer
from roomtape.media.ice import parse_addresses, use_host_addresses
from roomtape.media.presence import DisconnectReason, Membership, Presence
from roomtape.media.room import (
    NotAllowedError,
    PublishedTrack,
    RoomError,
    RoomEvent,
    RoomEventName,
    TrackKind,
    check_publish_allowed,
    check_publish_offer,
)
from roomtape.recording.meeting import realtimekit_start, running_composite
from roomtape.transcripts.clock import ClockOffset
from roomtape.transcripts.events import MAX_EVENTS, ConversationItemAdded, TranscriptEvent
from roomtape.transcripts.ingest import ingest
from roomtape.transcripts.links import TranscriptLinks

__all__ = ["CLOSE_CODES", "parse_track_kinds", "participant_json", "router", "start_presence", "track_json"]

log = logging.getLogger(__name__)

# Kept out of the OpenAPI document: it describes the API-token (Bearer) REST API, and these endpoints take a
# participant token and SDP instead; docs/signaling.md is their reference.
router = APIRouter(prefix="/v1/meetings/{meeting_id}", tags=["signaling"], include_in_schema=False)

SDP_MEDIA_TYPE: Final = "application/sdp"
TRACK_KINDS_HEADER: Final = "X-Roomtape-Track-Kinds"
_TRACK_KINDS: Final = frozenset(get_args(TrackKind))
_TRANSCRIPT_EVENTS: Final = TypeAdapter(list[TranscriptEvent])

CLOSE_CODES: Final[Mapping[str, int]] = {
    "left": 1000,
    "shutdown": 1001,
    "kicked": 4001,
    "replaced": 4002,
    "bad_request": 4400,
    "unauthenticated": 4401,
    "forbidden": 4403,
    "not_found": 4404,
    "conflict": 4409,
}
"""WebSocket close codes; 44xx mirror the HTTP statuses of the same errors (4000-4999 are for apps)."""

_ERROR_CLOSE: Final[Mapping[type[RoomtapeError], int]] = {
    InvalidInput: CLOSE_CODES["bad_request"],
    Unauthenticated: CLOSE_CODES["unauthenticated"],
    Forbidden: CLOSE_CODES["forbidden"],
    NotFound: CLOSE_CODES["not_found"],
    Conflict: CLOSE_CODES["conflict"],
}

_CORS: Final = {
    # WHIP clients in browsers post cross-origin and must read Location from the response.
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Location, ETag, Accept-Post",
}


def start_presence(app: FastAPI, ctx: ServerContext) -> Presence:
    """Create the process's :class:`Presence`, register its kick hook and keep it on ``app.state``.

    Called from the app's lifespan once the context is built.

    Args:
        app: The ASGI app.
        ctx: Its server context.

    Returns:
        The presence registry (also at ``app.state.presence``).
    """
    use_host_addresses(parse_addresses(ctx.settings.ice_host_addresses))
    presence = Presence(
        ctx.sessions,
        ctx.media,
        keep_alive_scale=ctx.settings.session_keep_alive_scale,
        transcript_links=TranscriptLinks(ctx.secret_key, ctx.settings.resolved_public_url),
        on_session_ended=lambda session_id: _submit_summary(ctx, session_id),
    )
    ctx.kick_hooks.append(presence.kick)
    app.state.presence = presence
    return presence


async def _submit_summary(ctx: ServerContext, session_id: str) -> None:
    if ctx.jobs is not None:
        await ctx.jobs.submit_summary(session_id)


def _presence(app: Any) -> Presence:
    presence = app.state.presence
    if not isinstance(presence, Presence):  # pragma: no cover - wiring error
        raise RuntimeError("start_presence() was not called in the lifespan")
    return presence


async def _authorize(ctx: ServerContext, token: str | None, meeting_id: str) -> Participant:
    """The participant a join token names, if it may join ``meeting_id`` now.

    Raises:
        Unauthenticated: no token, a bad or expired one, a deleted participant, or a revoked token.
        Forbidden: the token is for another meeting.
        Conflict: the meeting is INACTIVE.
    """
    if not token:
        raise Unauthenticated("a participant token is required")
    claims = verify_participant_token(ctx.secret_key, token)
    if claims.meeting_id != meeting_id:
        raise Forbidden("participant token is for another meeting")
    async with ctx.sessions() as db:
        participant = await db.get(Participant, claims.participant_id)
        meeting = await db.get(Meeting, meeting_id)
        if participant is None or participant.meeting_id != meeting_id:
            raise Unauthenticated("participant no longer exists")
        if participant.token_version != claims.version:
            raise Unauthenticated("participant token was revoked: a newer one was issued")
        if meeting is None or meeting.app_id != claims.app_id:
            raise Unauthenticated("participant token does not match the meeting")
        if meeting.status != MeetingStatus.ACTIVE:
            raise Conflict("meeting is INACTIVE and refuses joins")
        return participant


async def _policy(ctx: ServerContext, participant: Participant) -> PresetPolicy:
    """What the participant's preset allows now.

    Raises:
        Forbidden: the preset does not exist in the meeting's app.
    """
    async with ctx.sessions() as db:
        meeting = await db.get(Meeting, participant.meeting_id)
        policy = await policy_for(db, meeting.app_id, participant.preset_name) if meeting is not None else None
    if policy is None:
        raise Forbidden(f"participant's preset {participant.preset_name!r} does not exist in this app")
    return policy


def _bearer(request: Request) -> str | None:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def parse_track_kinds(value: str | None) -> dict[str, TrackKind]:
    """Parse ``mid:kind`` pairs (``"1:screen_video,2:screen_audio"``) labelling a WHIP offer's sections.

    Args:
        value: The ``kinds`` query parameter or the ``X-Roomtape-Track-Kinds`` header.

    Returns:
        Kind per media id.

    Raises:
        InvalidInput: on a malformed pair or an unknown kind.
    """
    kinds: dict[str, TrackKind] = {}
    for pair in (value or "").split(","):
        if not pair.strip():
            continue
        mid, sep, kind = pair.strip().partition(":")
        if not sep or not mid or kind not in _TRACK_KINDS:
            raise InvalidInput(f"track kinds: expected mid:kind with kind one of {sorted(_TRACK_KINDS)}, got {pair!r}")
        kinds[mid] = cast(TrackKind, kind)
    return kinds


# --------------------------------------------------------------------------------------------------
# WHIP


@router.options("/whip", include_in_schema=False)
@router.options("/whip/{resource_id}", include_in_schema=False)
async def whip_options() -> Response:
    """Tell WHIP clients (and browsers' CORS preflight) what the endpoint accepts."""
    return Response(
        status_code=204,
        headers={
            **_CORS,
            "Allow": "POST, DELETE, OPTIONS",
            "Accept-Post": SDP_MEDIA_TYPE,
            "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
            "Access-Control-Allow-Headers": f"Authorization, Content-Type, {TRACK_KINDS_HEADER}",
        },
    )


@router.post(
    "/whip",
    status_code=201,
    summary="Publish with WHIP",
    response_class=Response,
    responses={201: {"content": {SDP_MEDIA_TYPE: {}}, "description": "SDP answer; Location names the resource"}},
)
async def whip_publish(
    meeting_id: str,
    request: Request,
    kinds: str | None = Query(None, description="Labels for screen tracks, e.g. `1:screen_video,2:screen_audio`"),
) -> Response:
    """Join the meeting as a publish-only participant with an SDP offer; non-trickle ICE."""
    ctx = get_context(request)
    participant = await _authorize(ctx, _bearer(request), meeting_id)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != SDP_MEDIA_TYPE:
        return Response(
            json.dumps({"success": False, "error": {"code": 415, "message": "Content-Type must be application/sdp"}}),
            status_code=415,
            media_type="application/json",
            headers={"Accept-Post": SDP_MEDIA_TYPE},
        )
    try:
        offer = (await request.body()).decode("utf-8")
        sending = check_publish_offer(offer)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"malformed SDP: not UTF-8 text ({exc})") from exc
    except RoomError as exc:
        raise InvalidInput(str(exc)) from exc
    track_kinds = parse_track_kinds(kinds or request.headers.get(TRACK_KINDS_HEADER))
    # Refused before joining: a participant whose preset may not publish this changes nothing (no session
    # starts, no participantJoined).
    try:
        check_publish_allowed(await _policy(ctx, participant), sending, track_kinds)
    except NotAllowedError as exc:
        raise Forbidden(str(exc)) from exc

    presence = _presence(request.app)
    membership = await presence.join(meeting_id, participant.id)
    try:
        answer = await membership.room.publish(participant.id, offer, track_kinds=track_kinds)
    except RoomError as exc:
        await presence.leave(membership)
        raise (Forbidden if isinstance(exc, NotAllowedError) else InvalidInput)(str(exc)) from exc
    _leave_when_publisher_fails(presence, membership)
    location = f"/v1/meetings/{meeting_id}/whip/{membership.id}"
    return Response(
        answer,
        status_code=201,
        media_type=SDP_MEDIA_TYPE,
        headers={**_CORS, "Location": location, "ETag": f'"{membership.id}"'},
    )


def _leave_when_publisher_fails(presence: Presence, membership: Membership) -> None:
    """A WHIP client that vanishes without DELETE leaves when ICE consent fails."""
    publisher = membership.room.participants[membership.participant_id].publisher
    if publisher is None:  # pragma: no cover - publish() sets it
        return

    @publisher.on("connectionstatechange")
    async def on_state() -> None:
        if publisher.connectionState in ("failed", "closed") and not membership.left:
            await presence.leave(membership)


@router.delete("/whip/{resource_id}", summary="Stop a WHIP publication (leave)")
async def whip_delete(meeting_id: str, resource_id: str, request: Request) -> Response:
    """End the WHIP session: the participant leaves the meeting."""
    ctx = get_context(request)
    token = _bearer(request)
    if not token:
        raise Unauthenticated("a participant token is required")
    claims = verify_participant_token(ctx.secret_key, token)
    if claims.meeting_id != meeting_id:
        raise Forbidden("participant token is for another meeting")
    presence = _presence(request.app)
    membership = presence.get(resource_id)
    if membership is None or membership.meeting_id != meeting_id:
        raise NotFound("no such WHIP session")
    if membership.participant_id != claims.participant_id:
        raise Forbidden("this WHIP session belongs to another participant")
    await presence.leave(membership)
    return Response(status_code=200, headers=_CORS)


# --------------------------------------------------------------------------------------------------
# WebSocket


def participant_json(participant_id: str, name: str | None) -> dict[str, Any]:
    """A participant in messages: ``{id, name}``."""
    return {"id": participant_id, "name": name}


def permissions_json(policy: PresetPolicy) -> dict[str, Any]:
    """What the participant's preset allows, in the welcome message."""
    return {
        "preset_name": policy.preset_name,
        "publish": {"audio": policy.publish_audio, "video": policy.publish_video, "screen": policy.publish_screen},
        "subscribe": policy.subscribe,
        "hidden": policy.hidden,
        "record": policy.record,
        "chat": policy.chat,
        "max_video": list(policy.max_video) if policy.max_video else None,
        "max_screen": list(policy.max_screen) if policy.max_screen else None,
        "polls": {"view": policy.view_polls, "vote": policy.vote},
    }


def track_json(track: PublishedTrack) -> dict[str, Any]:
    """A track in messages: ``{id, participant_id, kind, muted}``."""
    return {"id": track.id, "participant_id": track.participant_id, "kind": track.kind, "muted": track.muted}


class _Connection:
    """One participant's signaling WebSocket, from welcome to leave."""

    def __init__(self, websocket: WebSocket, presence: Presence, membership: Membership) -> None:
        self._ws = websocket
        self._presence = presence
        self._membership = membership
        self._room = membership.room
        self._me = membership.participant_id
        self._out: asyncio.Queue[dict[str, Any] | int] = asyncio.Queue()
        self._handlers: list[tuple[RoomEventName, Callable[[RoomEvent], object]]] = []
        self._downlink: Downlink | None = None
        self._clock = ClockOffset()  # agent clock - server clock, as the client reported it (``clock``)
        membership.on_disconnect = self._disconnected

    def send(self, message: dict[str, Any]) -> None:
        """Queue a message; the writer task sends them in order."""
        self._out.put_nowait(message)

    def close(self, code: int) -> None:
        """Queue a close after the messages already queued."""
        self._out.put_nowait(code)

    def welcome(self) -> None:
        """Queue the welcome, and from now on every room event (nothing can happen in between: no await)."""
        room = self._room
        policy = self._membership.policy
        self.send(
            {
                "type": "welcome",
                "participant_id": self._me,
                "session_id": self._membership.session_id,
                "participants": [participant_json(p.id, p.name) for p in room.visible_participants(self._me)],
                "tracks": [track_json(t) for t in room.visible_tracks(self._me)],
                "permissions": permissions_json(policy),
                "chat": [m.to_json() for m in room.chat.messages()],
                "polls": [p.to_json(self._me) for p in room.polls.values()] if policy.view_polls else [],
            }
        )
        self._listen("participant_joined", lambda e: {"type": "participant_joined", "participant": self._who(e)})
        self._listen("participant_left", lambda e: {"type": "participant_left", "participant_id": e.participant_id})
        self._listen("track_published", lambda e: {"type": "track_published", "track": self._track(e)})
        self._listen("track_unpublished", lambda e: {"type": "track_unpublished", "track_id": self._track(e)["id"]})
        self._listen("track_muted", lambda e: {"type": "track_muted", "track_id": self._track(e)["id"]})
        self._listen("track_unmuted", lambda e: {"type": "track_unmuted", "track_id": self._track(e)["id"]})
        self._listen("chat_message", lambda e: {"type": "chat", "message": e.chat.to_json() if e.chat else None})
        self._room.events.on("track_over_limit", self._over_limit)
        self._handlers.append(("track_over_limit", self._over_limit))
        if policy.view_polls:
            for name in ("poll_created", "poll_updated"):
                self._room.events.on(name, self._poll)
                self._handlers.append((name, self._poll))
        if policy.subscribe:  # a preset that may not receive gets no downlink offers at all
            self._downlink = Downlink(room, self._me, self._offer)
            self._downlink.start()

    def _poll(self, event: RoomEvent) -> None:
        """Deliver a new poll, or new counts, to this participant (the voter too: it sees its vote count)."""
        if event.poll is not None:
            action = "created" if event.name == "poll_created" else "updated"
            self.send({"type": "poll", "action": action, "poll": event.poll.to_json(self._me)})

    def _over_limit(self, event: RoomEvent) -> None:
        """Tell the publisher its picture is larger than its preset allows (and is not forwarded)."""
        if event.participant_id != self._me or event.track is None or event.size is None or event.limit is None:
            return
        (width, height), (max_w, max_h) = event.size, event.limit
        self.send(
            {
                "type": "error",
                "code": "video_too_large",
                "track_id": event.track.id,
                "message": (
                    f"{event.track.kind} track {event.track.id}: {width}x{height} is larger than preset "
                    f"{self._membership.policy.preset_name!r} allows ({max_w}x{max_h}); it is not forwarded "
                    "or recorded until a keyframe that fits"
                ),
            }
        )

    def _who(self, event: RoomEvent) -> dict[str, Any]:
        participant = self._room.participants.get(event.participant_id)
        return participant_json(event.participant_id, participant.name if participant else None)

    @staticmethod
    def _track(event: RoomEvent) -> dict[str, Any]:
        assert event.track is not None
        return track_json(event.track)

    def _listen(self, name: RoomEventName, build: Callable[[RoomEvent], dict[str, Any]]) -> None:
        def handler(event: RoomEvent) -> None:
            # Your own events are answers to your own requests; a hidden participant's are nobody's business.
            if event.participant_id != self._me and not event.hidden:
                self.send(build(event))

        self._room.events.on(name, handler)
        self._handlers.append((name, handler))

    async def _offer(self, offer: DownlinkOffer) -> None:
        self.send(
            {
                "type": "offer",
                "sdp": offer.sdp,
                "tracks": {
                    mid: {"track_id": t.track_id, "participant_id": t.participant_id, "kind": t.kind}
                    for mid, t in offer.tracks.items()
                },
            }
        )

    async def _disconnected(self, reason: DisconnectReason) -> None:
        if reason == "kicked":
            self.send({"type": "kicked"})
        elif reason == "replaced":
            self.send({"type": "error", "message": "replaced by a newer connection of the same participant"})
        self.close(CLOSE_CODES[reason])

    async def write(self) -> None:
        """Send queued messages until a close code is queued."""
        while True:
            item = await self._out.get()
            if isinstance(item, int):
                if self._ws.client_state == WebSocketState.CONNECTED:
                    await self._ws.close(item)
                return
            await self._ws.send_text(json.dumps(item))

    async def read(self) -> None:
        """Handle client messages until ``leave`` or disconnect."""
        while True:
            raw = await self._ws.receive_text()
            try:
                message = json.loads(raw)
                if not isinstance(message, dict) or not isinstance(message.get("type"), str):
                    raise InvalidInput("a message is a JSON object with a string 'type'")
                if message["type"] == "leave":
                    self.close(CLOSE_CODES["left"])
                    return
                await self._handle(message)
            except (RoomtapeError, RoomError, ValueError) as exc:
                text = exc.message if isinstance(exc, RoomtapeError) else str(exc)
                error: dict[str, Any] = {"type": "error", "message": text, **_request_of(raw)}
                if isinstance(exc, NotAllowedError | Forbidden):
                    error["code"] = "forbidden"  # the participant's preset does not allow it
                self.send(error)
            except Exception:
                # A bug in handling one message must not silently drop the participant (their reader would
                # end, and they would be recorded as having left): log it, tell the client, keep going.
                log.exception("signaling: handling %r failed", _request_type(raw))
                self.send({"type": "error", "message": "internal error", **_request_of(raw)})

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "publish":
            sdp = _string(message, "sdp")
            kinds = message.get("kinds") or {}
            if not isinstance(kinds, dict) or any(v not in _TRACK_KINDS for v in kinds.values()):
                raise InvalidInput(f"publish: kinds maps mids to one of {sorted(_TRACK_KINDS)}")
            answer = await self._room.publish(self._me, sdp, track_kinds={str(k): v for k, v in kinds.items()})
            mine = self._room.participants[self._me].tracks.values()
            self.send(
                {
                    "type": "publish_answer",
                    "sdp": answer,
                    "tracks": {t.mid or "": {"track_id": t.id, "kind": t.kind} for t in mine},
                }
            )
        elif kind == "answer":
            if self._downlink is None:
                raise InvalidInput("no offer was made")
            await self._downlink.accept_answer(_string(message, "sdp"))
        elif kind == "mute":
            muted = message.get("muted")
            if not isinstance(muted, bool):
                raise InvalidInput("mute: 'muted' must be true or false")
            self._room.set_muted(self._me, _string(message, "track_id"), muted)
        elif kind == "ping":
            self.send({"type": "pong", "t": message.get("t"), "server": time.time()})
        elif kind == "clock":
            self._clock = ClockOffset(_seconds(message, "offset"), abs(_seconds(message, "uncertainty", 0.0)))
        elif kind == "transcript":
            await self._transcript(message)
        elif kind == "chat":
            await self._chat(message)
        elif kind == "vote":
            option = message.get("option")
            if isinstance(option, bool) or not isinstance(option, int):
                raise InvalidInput("vote: 'option' must be the index of an option")
            self._room.vote(self._me, _string(message, "poll_id"), option)
        elif kind in ("start_recording", "stop_recording"):
            await self._recording(kind == "start_recording", message)
        else:
            raise InvalidInput(f"unknown message type {kind!r}")

    async def _recording(self, start: bool, message: dict[str, Any]) -> None:
        """Start or stop the meeting's (composite) recording, if the participant's preset has ``can_record``."""
        policy = self._membership.policy
        if not policy.record:
            raise Forbidden(f"preset {policy.preset_name!r} does not allow starting or stopping the recording")
        ctx: ServerContext = self._ws.app.state.ctx
        manager = ctx.meeting_recordings
        if manager is None:  # pragma: no cover - set in the lifespan
            raise Conflict("the recording service is not running")
        caller = {"type": "USER", "name": self._membership.name, "user_Id": self._me}
        async with ctx.sessions() as db:
            meeting = await db.get(Meeting, self._membership.meeting_id)
            if meeting is None:  # pragma: no cover - the meeting exists while someone is in it
                raise NotFound("meeting not found")
            if start:
                config, storage, max_seconds = realtimekit_start(meeting)
                recording = await manager.start(
                    db, meeting, config=config, caller=caller, storage_config=storage, max_seconds=max_seconds
                )
            else:
                running = await running_composite(db, meeting.id)
                if running is None:
                    raise Conflict("no recording of this meeting is running")
                recording = await manager.stop(running.id, "API_CALL", caller)
        self.send(
            {
                "type": "recording_started" if start else "recording_stopped",
                "request_id": message.get("request_id"),
                "recording_id": recording.id,
                "status": recording.status,
            }
        )

    async def _transcript(self, message: dict[str, Any]) -> None:
        """Store ``conversation_item_added`` / ``user_input_transcribed`` events on the session's clock."""
        raw = message.get("events")
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_EVENTS:
            raise InvalidInput(f"transcript: 'events' must be a list of 1 to {MAX_EVENTS} events")
        events = _TRANSCRIPT_EVENTS.validate_python(raw)
        offset = self._clock
        if message.get("clock_offset") is not None:
            offset = ClockOffset(_seconds(message, "clock_offset"))
        # The agent's own replies are the sender's speech unless it says otherwise.
        events = [
            e.model_copy(update={"participant_id": self._me})
            if isinstance(e, ConversationItemAdded) and e.role == "assistant" and e.participant_id is None
            else e
            for e in events
        ]
        ctx: ServerContext = self._ws.app.state.ctx
        async with ctx.sessions() as db:
            session = await db.get(Session, self._membership.session_id)
            if session is None:  # pragma: no cover - the membership's session exists while it is joined
                raise NotFound("session not found")
            items = await ingest(db, session, events, offset=offset, source="agent")
            await db.commit()
        self.send(
            {
                "type": "transcript_stored",
                "request_id": message.get("request_id"),
                "item_ids": [i.id for i in items],
                "items": [{"id": i.id, "start": i.start, "end": i.end} for i in items],
            }
        )

    async def _chat(self, message: dict[str, Any]) -> None:
        """Check a chat message, store it if the meeting persists chat, then deliver it to everyone else.

        Stored before delivered: a message someone saw is never missing from the export. A refused message
        (empty, too long) is neither stored nor delivered; the sender gets ``error`` with ``request: chat``.
        """
        if not self._membership.policy.chat:
            raise Forbidden(f"preset {self._membership.policy.preset_name!r} does not allow sending chat messages")
        me = self._room.participants.get(self._me)
        chat = new_chat_message(self._me, me.name if me else self._membership.name, message.get("text"))
        ctx: ServerContext = self._ws.app.state.ctx
        async with ctx.sessions() as db:
            if await persists_chat(db, self._membership.meeting_id):
                store_chat_message(
                    db, app_id=self._membership.app_id, session_id=self._membership.session_id, message=chat
                )
                await db.commit()
        self._room.post_chat(chat)
        self.send({"type": "chat_sent", "request_id": message.get("request_id"), "message": chat.to_json()})

    async def finish(self) -> None:
        """Stop listening, close the downlink and leave the room."""
        for name, handler in self._handlers:
            self._room.events.off(name, handler)
        if self._downlink is not None:
            await self._downlink.aclose()
        await self._presence.leave(self._membership)


def _string(message: Mapping[str, Any], key: str) -> str:
    value = message.get(key)
    if not isinstance(value, str) or not value:
        raise InvalidInput(f"{message.get('type')}: '{key}' must be a non-empty string")
    return value


def _seconds(message: Mapping[str, Any], key: str, default: float | None = None) -> float:
    value = message.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value or abs(value) > 1e10:
        raise InvalidInput(f"{message.get('type')}: '{key}' must be a number of seconds")
    return float(value)


def _request_type(raw: str) -> str | None:
    with contextlib.suppress(ValueError, AttributeError):
        value = json.loads(raw).get("type")
        return value if isinstance(value, str) else None
    return None


def _request_of(raw: str) -> dict[str, Any]:
    """``request`` (the failed message's type) and its ``request_id`` if it had one, for ``error``."""
    fields: dict[str, Any] = {"request": _request_type(raw)}
    with contextlib.suppress(ValueError, AttributeError):
        request_id = json.loads(raw).get("request_id")
        if request_id is not None:
            fields["request_id"] = request_id
    return fields


async def _refuse(websocket: WebSocket, exc: RoomtapeError) -> None:
    code = next((c for cls, c in _ERROR_CLOSE.items() if isinstance(exc, cls)), 1011)
    await websocket.send_text(json.dumps({"type": "error", "message": exc.message}))
    await websocket.close(code)


@router.websocket("/ws")
async def signaling_socket(websocket: WebSocket, meeting_id: str, token: str | None = None) -> None:
    """The participant's signaling connection; the protocol is in ``docs/signaling.md``."""
    # Accept first: a browser only sees a close code (and our error message) on an accepted socket.
    await websocket.accept()
    ctx: ServerContext = websocket.app.state.ctx
    presence = _presence(websocket.app)
    try:
        participant = await _authorize(ctx, token, meeting_id)
        membership = await presence.join(meeting_id, participant.id)
    except RoomtapeError as exc:
        await _refuse(websocket, exc)
        return
    connection = _Connection(websocket, presence, membership)
    connection.welcome()
    writer = asyncio.create_task(connection.write(), name="roomtape-ws-writer")
    reader = asyncio.create_task(connection.read(), name="roomtape-ws-reader")
    try:
        # The writer ends after a close (leave, kick, replacement); the reader when the client goes.
        done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            failure = task.exception()
            if isinstance(failure, WebSocketDisconnect):
                log.info(
                    "signaling: %s closed the socket (code %s, reason %r)",
                    membership.participant_id,
                    failure.code,
                    failure.reason,
                )
            elif failure is not None:
                log.error("signaling %s of %s ended: %r", task.get_name(), membership.participant_id, failure)
    finally:
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, Exception):
            await reader
        await connection.finish()
        if not writer.done():
            connection.close(CLOSE_CODES["left"])
            with contextlib.suppress(asyncio.TimeoutError, WebSocketDisconnect, Exception):
                await asyncio.wait_for(writer, 2.0)
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await writer
