"""The Python participant: join a roomtape meeting over WebRTC, publish, receive, mute, leave.

:class:`RoomClient` speaks the signaling WebSocket (``docs/signaling.md``): it publishes over one peer
connection and answers the server's offers on a second one, which the server renegotiates as others'
tracks come and go. :func:`whip_publish` is the publish-only path (WHIP, RFC 9725).

Example::

    client = RoomClient("http://127.0.0.1:8080", token)
    await client.join()
    mic = AudioPushTrack()
    await client.publish(audio=mic, video="intro.mp4")
    async for remote in client.remote_tracks():
        frame = await remote.track.recv()
        ...
    await client.leave()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlencode, urljoin, urlsplit, urlunsplit

import httpx
import jwt
from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpCodecCapability,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roomtape.agents.timing import use_capture_clock
from roomtape.agents.tracks import MuteGate
from roomtape.media.events import EventEmitter

__all__ = [
    "ChatMessage",
    "ClientEvent",
    "ClientEventName",
    "JoinError",
    "RemoteParticipant",
    "RemoteTrack",
    "RoomClient",
    "SignalingError",
    "TrackKind",
    "TrackSource",
    "WhipError",
    "WhipSession",
    "whip_publish",
]

logger = logging.getLogger(__name__)

_REPLY_TIMEOUT = 10.0
"""Seconds to wait for the server's welcome or publish answer."""

TrackKind = Literal["audio", "video", "screen_audio", "screen_video"]
"""What a track carries; screen tracks are labelled by the client."""

TrackSource = MediaStreamTrack | str | Path
"""A track, or a media file (or device URL) that ``aiortc.contrib.media.MediaPlayer`` can open."""

ClientEventName = Literal[
    "participant_joined",
    "participant_left",
    "track",
    "track_published",
    "track_unpublished",
    "track_muted",
    "track_unmuted",
    "chat",
    "kicked",
    "poll",
    "error",
    "closed",
]
"""Events a :class:`RoomClient` emits. ``track`` fires when a remote track's media starts arriving
(:attr:`RemoteTrack.track` is set); ``track_published`` as soon as the server announces it; ``chat`` for each
chat message someone else sent (:attr:`ClientEvent.chat`)."""


class SignalingError(Exception):
    """The server refused a request (its ``error`` message is the exception's message)."""


class JoinError(SignalingError):
    """The server refused the join.

    Args:
        message: The server's error message.
        code: WebSocket close code (4401 bad token, 4403 another meeting, 4409 meeting INACTIVE, ...).
    """

    def __init__(self, message: str, code: int | None) -> None:
        super().__init__(message)
        self.code = code


class WhipError(SignalingError):
    """A WHIP request failed.

    Args:
        message: The server's error message.
        status: HTTP status.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class RemoteParticipant:
    """Someone else in the meeting."""

    id: str
    """Participant id."""
    name: str | None = None
    """Display name."""


@dataclass
class RemoteTrack:
    """A track another participant publishes."""

    id: str
    """Track id."""
    participant_id: str
    """The publisher."""
    kind: TrackKind
    """What it carries."""
    muted: bool = False
    """The publisher's last mute signal."""
    track: MediaStreamTrack | None = None
    """The received media (decoded frames from ``recv()``), once the server forwards it."""


@dataclass(frozen=True)
class ChatMessage:
    """A chat message of the meeting's session (plain text, never markup)."""

    id: str
    """Message id."""
    participant_id: str
    """The sender."""
    name: str | None
    """The sender's display name."""
    text: str
    """What was written."""
    time: float
    """When the server received it, Unix time (server clock)."""

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChatMessage:
        """From the signaling message's ``{id, participant_id, name, text, time}``."""
        return cls(
            str(data["id"]), str(data["participant_id"]), data.get("name"), str(data["text"]), float(data["time"])
        )


@dataclass(frozen=True)
class ClientEvent:
    """Payload of every :class:`RoomClient` event."""

    name: ClientEventName
    """Event name."""
    participant: RemoteParticipant | None = None
    """For participant events (``participant_left`` carries one with only the id)."""
    track: RemoteTrack | None = None
    """For track events."""
    message: str | None = None
    """For ``error`` (and ``closed``: the reason, if any)."""
    chat: ChatMessage | None = None
    """For ``chat``."""
    poll: dict[str, Any] | None = None
    """For ``poll``: the poll as the server shows it to you (new, or with new counts)."""


class _ReceivedTrack(MediaStreamTrack):
    """A received track whose ``recv()`` ends (``MediaStreamError``) once the server unpublishes it.

    aiortc's remote track only ends when its connection closes; the downlink stays open for the others'
    tracks, so the end of one track comes from the ``track_unpublished`` message instead.
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self._source = source
        self._pending: asyncio.Future[Any] | None = None

    async def recv(self) -> Any:
        if self.readyState != "live":
            raise MediaStreamError
        pending = asyncio.ensure_future(self._source.recv())
        self._pending = pending
        try:
            return await pending
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self.readyState != "live" and not (task is not None and task.cancelling()):
                raise MediaStreamError from None
            raise
        finally:
            self._pending = None

    def stop(self) -> None:
        super().stop()
        if self._pending is not None:
            self._pending.cancel()


def _no_ice_servers() -> RTCConfiguration:
    # aiortc's default configuration asks a public STUN server; roomtape runs on a LAN or loopback and
    # gives its host candidates, so by default the client does not wait on the internet.
    return RTCConfiguration(iceServers=[])


def _codecs_named(name: str) -> list[RTCRtpCodecCapability]:
    # The named video codec with its retransmission format: offering H.264 alone means every profile
    # aiortc has, and RTX keeps NACK recovery working.
    capabilities = RTCRtpSender.getCapabilities("video").codecs
    chosen = [c for c in capabilities if c.mimeType.lower() in (f"video/{name.lower()}", "video/rtx")]
    if not any(c.mimeType.lower() != "video/rtx" for c in chosen):
        raise ValueError(f"aiortc cannot send {name}")
    return chosen


def _meeting_of(token: str) -> str:
    # The token is verified by the server; the client only reads which meeting it names.
    claims = jwt.decode(token, options={"verify_signature": False})
    meeting = claims.get("mtg")
    if not isinstance(meeting, str):
        raise ValueError("not a roomtape participant token (no meeting claim)")
    return meeting


def _open(source: TrackSource, kind: Literal["audio", "video"]) -> tuple[MediaStreamTrack, MediaPlayer | None]:
    if isinstance(source, MediaStreamTrack):
        return source, None
    player = MediaPlayer(str(source))
    track = player.audio if kind == "audio" else player.video
    if track is None:
        raise ValueError(f"{source} has no {kind} stream")
    return track, player


class RoomClient:
    """A participant of a roomtape meeting.

    Args:
        base_url: The server, e.g. ``"http://127.0.0.1:8080"``.
        token: The participant's join token (from "add participant").
        meeting_id: The meeting; read from the token when omitted.
        configuration: aiortc configuration of both peer connections (ICE servers for TURN, ...).
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        meeting_id: str | None = None,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.meeting_id = meeting_id or _meeting_of(token)
        self._token = token
        self._configuration = configuration or _no_ice_servers()
        self.participant_id: str | None = None
        """Own participant id, after :meth:`join`."""
        self.session_id: str | None = None
        """The meeting's session, after :meth:`join`."""
        self.participants: dict[str, RemoteParticipant] = {}
        """The others in the meeting, by id."""
        self.tracks: dict[str, RemoteTrack] = {}
        """The others' tracks, by id."""
        self.published: dict[TrackKind, str] = {}
        """Own track ids by kind, after :meth:`publish`."""
        self.chat: list[ChatMessage] = []
        """The session's chat so far, oldest first: the history the server sent on :meth:`join`, then every
        message sent or received since."""
        self.permissions: dict[str, Any] = {}
        """What the participant's preset allows (the welcome's ``permissions``), after :meth:`join`."""
        self._pending_recording: asyncio.Future[dict[str, Any]] | None = None
        self.polls: dict[str, dict[str, Any]] = {}
        """Polls of the session by id, as last received (``poll`` events update them)."""
        self._pending_vote: tuple[str, asyncio.Future[dict[str, Any]]] | None = None
        self.events: EventEmitter[ClientEventName, ClientEvent] = EventEmitter()
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._publisher: RTCPeerConnection | None = None
        self._downlink: RTCPeerConnection | None = None
        self._mids: dict[str, str] = {}
        self._gates: dict[TrackKind, MuteGate] = {}
        self._players: list[MediaPlayer] = []
        self._pending_publish: asyncio.Future[dict[str, Any]] | None = None
        self._pending_chat: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._chat_requests = 0
        self._arrived: asyncio.Queue[RemoteTrack | None] = asyncio.Queue()
        self._waiters: list[tuple[ClientEventName, Callable[[ClientEvent], bool], asyncio.Future[ClientEvent]]] = []
        self._closed = asyncio.Event()
        self.close_code: int | None = None
        """Close code of the signaling connection once it closed (4001 = kicked)."""

    # ----------------------------------------------------------------------------------------------
    # events

    def on(self, name: ClientEventName, callback: Callable[[ClientEvent], object]) -> Callable[[ClientEvent], object]:
        """Register ``callback`` for an event; usable as a decorator.

        Args:
            name: Event name.
            callback: Called with the :class:`ClientEvent`.

        Returns:
            The callback.
        """
        return self.events.on(name, callback)

    def _emit(self, event: ClientEvent) -> None:
        self.events.emit(event.name, event)
        for waiter in list(self._waiters):
            name, predicate, future = waiter
            if name == event.name and not future.done() and predicate(event):
                future.set_result(event)
                self._waiters.remove(waiter)

    async def wait_for(
        self,
        name: ClientEventName,
        predicate: Callable[[ClientEvent], bool] = lambda _: True,
        *,
        within: float = 10.0,
    ) -> ClientEvent:
        """Wait for the next event ``name`` that satisfies ``predicate``.

        Args:
            name: Event name.
            predicate: Filter on the event.
            within: Seconds to wait.

        Returns:
            The event.

        Raises:
            TimeoutError: if no such event came in time.
        """
        future: asyncio.Future[ClientEvent] = asyncio.get_running_loop().create_future()
        entry = (name, predicate, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, within)
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)

    async def remote_tracks(self) -> AsyncIterator[RemoteTrack]:
        """Yield every remote track once its media arrives, until the client leaves.

        Yields:
            Remote tracks, :attr:`RemoteTrack.track` set.
        """
        while True:
            track = await self._arrived.get()
            if track is None:
                return
            yield track

    # ----------------------------------------------------------------------------------------------
    # joining

    def _ws_url(self) -> str:
        scheme, netloc, path, _, _ = urlsplit(self.base_url)
        ws_scheme = "wss" if scheme == "https" else "ws"
        query = urlencode({"token": self._token})
        return urlunsplit((ws_scheme, netloc, f"{path}/v1/meetings/{self.meeting_id}/ws", query, ""))

    async def join(self) -> None:
        """Connect and wait for the welcome; others' media starts arriving on its own.

        Raises:
            JoinError: if the server refused (bad or expired token, another meeting, INACTIVE meeting).
        """
        ws = await connect(self._ws_url(), max_size=2**22)
        self._ws = ws
        try:
            welcome = json.loads(await asyncio.wait_for(ws.recv(), _REPLY_TIMEOUT))
        except ConnectionClosed as exc:
            raise JoinError(
                exc.rcvd.reason if exc.rcvd else "connection closed", exc.rcvd.code if exc.rcvd else None
            ) from exc
        if welcome.get("type") != "welcome":
            message = str(welcome.get("message", welcome))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.wait_closed(), 2.0)
            raise JoinError(message, ws.close_code)
        self.participant_id = welcome["participant_id"]
        self.session_id = welcome["session_id"]
        self.permissions = dict(welcome.get("permissions") or {})
        self.polls = {p["id"]: p for p in welcome.get("polls") or []}
        for p in welcome["participants"]:
            self.participants[p["id"]] = RemoteParticipant(p["id"], p.get("name"))
        for t in welcome["tracks"]:
            self.tracks[t["id"]] = RemoteTrack(t["id"], t["participant_id"], t["kind"], bool(t.get("muted")))
        self.chat = [ChatMessage.from_json(m) for m in welcome.get("chat", [])]
        self._reader = asyncio.get_running_loop().create_task(self._read(ws), name="roomtape-client-reader")

    async def _send(self, message: Mapping[str, Any]) -> None:
        if self._ws is None:
            raise SignalingError("not joined")
        await self._ws.send(json.dumps(message))

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = json.loads(raw)
                try:
                    await self._handle(message)
                except Exception:
                    logger.exception("handling %s failed", message.get("type"))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            if self._pending_publish is not None and not self._pending_publish.done():
                self._pending_publish.set_exception(SignalingError("signaling connection closed"))
            for pending in self._pending_chat.values():
                if not pending.done():
                    pending.set_exception(SignalingError("signaling connection closed"))
            self._closed.set()
            self._arrived.put_nowait(None)
            self._emit(ClientEvent("closed", message=ws.close_reason or None))

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "offer":
            await self._answer(message)
        elif kind == "publish_answer":
            if self._pending_publish is not None and not self._pending_publish.done():
                self._pending_publish.set_result(message)
        elif kind == "participant_joined":
            p = message["participant"]
            participant = RemoteParticipant(p["id"], p.get("name"))
            self.participants[participant.id] = participant
            self._emit(ClientEvent("participant_joined", participant=participant))
        elif kind == "participant_left":
            gone = self.participants.pop(message["participant_id"], None) or RemoteParticipant(
                message["participant_id"]
            )
            self._emit(ClientEvent("participant_left", participant=gone))
        elif kind == "track_published":
            t = message["track"]
            track = RemoteTrack(t["id"], t["participant_id"], t["kind"], bool(t.get("muted")))
            self.tracks[track.id] = track
            self._emit(ClientEvent("track_published", track=track))
        elif kind == "track_unpublished":
            removed = self.tracks.pop(message["track_id"], None)
            if removed is not None:
                if removed.track is not None:
                    removed.track.stop()  # its recv() ends: the publisher stopped or left
                self._emit(ClientEvent("track_unpublished", track=removed))
        elif kind in ("track_muted", "track_unmuted"):
            muted_track = self.tracks.get(message["track_id"])
            if muted_track is not None:
                muted_track.muted = kind == "track_muted"
                self._emit(ClientEvent(cast(ClientEventName, kind), track=muted_track))
        elif kind == "chat":
            chat = ChatMessage.from_json(message["message"])
            self.chat.append(chat)
            self._emit(ClientEvent("chat", chat=chat))
        elif kind == "chat_sent":
            sent = self._pending_chat.pop(message.get("request_id", -1), None)
            if sent is not None and not sent.done():
                sent.set_result(message)
        elif kind == "kicked":
            self._emit(ClientEvent("kicked"))
        elif kind == "poll":
            poll = dict(message["poll"])
            self.polls[poll["id"]] = poll
            if self._pending_vote is not None and self._pending_vote[0] == poll["id"]:
                if not self._pending_vote[1].done():
                    self._pending_vote[1].set_result(poll)
            self._emit(ClientEvent("poll", poll=poll))
        elif kind in ("recording_started", "recording_stopped"):
            if self._pending_recording is not None and not self._pending_recording.done():
                self._pending_recording.set_result(message)
        elif kind == "error":
            text = str(message.get("message", "error"))
            if message.get("request") == "publish" and self._pending_publish and not self._pending_publish.done():
                self._pending_publish.set_exception(SignalingError(text))
            refused = (
                self._pending_chat.pop(message.get("request_id", -1), None)
                if message.get("request") == "chat"
                else None
            )
            if refused is not None and not refused.done():
                refused.set_exception(SignalingError(text))
            if message.get("request") == "vote" and self._pending_vote and not self._pending_vote[1].done():
                self._pending_vote[1].set_exception(SignalingError(text))
            pending = self._pending_recording
            if message.get("request") in ("start_recording", "stop_recording") and pending and not pending.done():
                pending.set_exception(SignalingError(text))
            self._emit(ClientEvent("error", message=text))

    async def _answer(self, message: dict[str, Any]) -> None:
        if self._downlink is None:
            # One transport for every section (max-bundle): renegotiations add no ICE gathering.
            config = RTCConfiguration(
                iceServers=self._configuration.iceServers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE
            )
            self._downlink = RTCPeerConnection(config)
            self._downlink.on("track", self._on_remote_track)
        for mid, info in message.get("tracks", {}).items():
            self._mids[mid] = info["track_id"]
            if info["track_id"] not in self.tracks:
                self.tracks[info["track_id"]] = RemoteTrack(info["track_id"], info["participant_id"], info["kind"])
        pc = self._downlink
        await pc.setRemoteDescription(RTCSessionDescription(sdp=message["sdp"], type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        await self._send({"type": "answer", "sdp": pc.localDescription.sdp})

    def _on_remote_track(self, track: MediaStreamTrack) -> None:
        pc = self._downlink
        assert pc is not None
        transceiver = next((t for t in pc.getTransceivers() if t.receiver.track is track), None)
        track_id = self._mids.get(transceiver.mid or "") if transceiver is not None else None
        remote = self.tracks.get(track_id or "")
        if remote is None:
            logger.warning("media for an unknown section %s", transceiver.mid if transceiver else None)
            return
        remote.track = _ReceivedTrack(track)
        self._arrived.put_nowait(remote)
        self._emit(ClientEvent("track", track=remote))

    # ----------------------------------------------------------------------------------------------
    # publishing

    async def publish(
        self,
        *,
        audio: TrackSource | None = None,
        video: TrackSource | None = None,
        screen: TrackSource | None = None,
        screen_audio: TrackSource | None = None,
        video_codec: Literal["VP8", "H264"] | None = None,
    ) -> dict[TrackKind, str]:
        """Publish tracks (once per join): aiortc tracks, push tracks, or media files.

        Args:
            audio: Microphone-like audio.
            video: Camera-like video.
            screen: Screen share video.
            screen_audio: Screen share audio.
            video_codec: Offer only this codec for the video tracks (default: every codec aiortc has,
                and the server picks VP8).

        Returns:
            Track id per kind, as others see them.

        Raises:
            SignalingError: if the server refused the offer (e.g. no forwardable codec).
        """
        if self._publisher is not None:
            raise SignalingError("already publishing: publish every track in one call")
        offered: tuple[tuple[TrackKind, TrackSource | None], ...] = (
            ("audio", audio),
            ("video", video),
            ("screen_video", screen),
            ("screen_audio", screen_audio),
        )
        sources = [(kind, source) for kind, source in offered if source is not None]
        if not sources:
            raise ValueError("nothing to publish")
        pc = RTCPeerConnection(self._configuration)
        self._publisher = pc
        transceivers = []
        for kind, source in sources:
            media: Literal["audio", "video"] = "audio" if kind in ("audio", "screen_audio") else "video"
            track, player = _open(source, media)
            if player is not None:
                self._players.append(player)
            gate = MuteGate(track)
            self._gates[kind] = gate
            transceiver = pc.addTransceiver(gate, direction="sendonly")
            if media == "video" and video_codec is not None:
                transceiver.setCodecPreferences(_codecs_named(video_codec))
            use_capture_clock(transceiver.sender, gate)  # sender reports on the capture clock: A/V in sync
            transceivers.append((kind, transceiver))
        await pc.setLocalDescription(await pc.createOffer())
        kinds = {t.mid: kind for kind, t in transceivers if t.mid is not None}
        self._pending_publish = asyncio.get_running_loop().create_future()
        await self._send({"type": "publish", "sdp": pc.localDescription.sdp, "kinds": kinds})
        reply = await asyncio.wait_for(self._pending_publish, _REPLY_TIMEOUT)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type="answer"))
        for mid, info in reply.get("tracks", {}).items():
            kind = kinds.get(mid, info["kind"])
            self.published[kind] = info["track_id"]
        return dict(self.published)

    async def set_muted(self, kind: TrackKind, muted: bool) -> None:
        """Mute or unmute an own track: black/silence is sent and everyone gets the mute event.

        Args:
            kind: Which published track.
            muted: The new state.

        Raises:
            SignalingError: if nothing of that kind is published.
        """
        gate = self._gates.get(kind)
        track_id = self.published.get(kind)
        if gate is None or track_id is None:
            raise SignalingError(f"no published {kind} track")
        gate.muted = muted
        await self._send({"type": "mute", "track_id": track_id, "muted": muted})

    # ----------------------------------------------------------------------------------------------
    # leaving

    async def send_chat(self, text: str) -> ChatMessage:
        """Send a chat message to everyone in the meeting and wait until the server took it.

        Args:
            text: Plain text, at most 4000 characters (``roomtape.media.chat.MAX_CHAT_CHARS``).

        Returns:
            The message as the server stamped it (id, time); also appended to :attr:`chat`.

        Raises:
            SignalingError: if the server refused it (empty, too long) — then nothing was stored or sent —
                or the connection closed.
        """
        self._chat_requests += 1
        request_id = self._chat_requests
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending_chat[request_id] = future
        try:
            await self._send({"type": "chat", "text": text, "request_id": request_id})
            reply = await asyncio.wait_for(future, _REPLY_TIMEOUT)
        finally:
            self._pending_chat.pop(request_id, None)
        chat = ChatMessage.from_json(reply["message"])
        self.chat.append(chat)
        return chat

    async def vote(self, poll_id: str, option: int) -> dict[str, Any]:
        """Vote in a poll (``option``: index into its options); returns the poll with the new counts.

        Raises:
            SignalingError: if the server refused (preset without ``polls.can_vote``, voted already, ...).
        """
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending_vote = (poll_id, future)
        await self._send({"type": "vote", "poll_id": poll_id, "option": option})
        return await asyncio.wait_for(future, _REPLY_TIMEOUT)

    async def start_recording(self) -> str:
        """Start the meeting's recording (the preset must allow ``can_record``); returns the recording id.

        Raises:
            SignalingError: if the server refused (the preset does not allow it, one already runs).
        """
        return await self._recording("start_recording")

    async def stop_recording(self) -> str:
        """Stop the meeting's running recording (the preset must allow ``can_record``); returns its id.

        Raises:
            SignalingError: if the server refused (the preset does not allow it, none runs).
        """
        return await self._recording("stop_recording")

    async def _recording(self, request: str) -> str:
        self._pending_recording = asyncio.get_running_loop().create_future()
        await self._send({"type": request})
        reply = await asyncio.wait_for(self._pending_recording, _REPLY_TIMEOUT)
        return str(reply["recording_id"])

    async def leave(self) -> None:
        """Leave the meeting and close every connection. Idempotent."""
        ws = self._ws
        if ws is not None and not self._closed.is_set():
            with contextlib.suppress(ConnectionClosed):
                await self._send({"type": "leave"})
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._closed.wait(), 2.0)
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        await self._close_media()

    async def _close_media(self) -> None:
        for pc in (self._publisher, self._downlink):
            if pc is not None:
                await pc.close()
        for gate in self._gates.values():
            gate.stop()
        self._arrived.put_nowait(None)

    async def __aenter__(self) -> RoomClient:
        await self.join()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()


# --------------------------------------------------------------------------------------------------
# WHIP


@dataclass
class WhipSession:
    """A WHIP publication: the peer connection and the resource to ``DELETE`` when done."""

    resource_url: str
    """Absolute URL of the WHIP resource (the ``Location`` of the answer)."""
    pc: RTCPeerConnection
    """The publishing peer connection."""
    token: str
    """The participant token (needed for ``DELETE``)."""
    players: list[MediaPlayer] = field(default_factory=list)
    """Media files opened for the publication."""

    async def close(self) -> None:
        """``DELETE`` the resource (the participant leaves) and close the connection."""
        try:
            async with httpx.AsyncClient() as http:
                await http.delete(self.resource_url, headers={"Authorization": f"Bearer {self.token}"})
        finally:
            await self.pc.close()


async def whip_publish(
    url: str,
    token: str,
    tracks: Mapping[TrackKind, TrackSource],
    *,
    configuration: RTCConfiguration | None = None,
) -> WhipSession:
    """Publish tracks to a WHIP endpoint (``.../v1/meetings/{meeting_id}/whip``).

    Args:
        url: The WHIP endpoint.
        token: Participant token (sent as Bearer).
        tracks: Track or media file per kind; screen kinds are labelled for the server.
        configuration: aiortc configuration (no ICE servers by default).

    Returns:
        The session; call :meth:`WhipSession.close` to leave.

    Raises:
        WhipError: if the server refused (its message and HTTP status).
    """
    pc = RTCPeerConnection(configuration or _no_ice_servers())
    players: list[MediaPlayer] = []
    added = []
    for kind, source in tracks.items():
        track, player = _open(source, "audio" if kind in ("audio", "screen_audio") else "video")
        if player is not None:
            players.append(player)
        added.append((kind, pc.addTransceiver(track, direction="sendonly")))
    await pc.setLocalDescription(await pc.createOffer())
    labels = ",".join(f"{t.mid}:{kind}" for kind, t in added if kind.startswith("screen") and t.mid)
    params = {"kinds": labels} if labels else None
    async with httpx.AsyncClient() as http:
        response = await http.post(
            url,
            params=params,
            content=pc.localDescription.sdp,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"},
        )
    if response.status_code != 201:
        await pc.close()
        try:
            message = str(response.json()["error"]["message"])
        except (ValueError, KeyError, TypeError):
            message = response.text
        raise WhipError(message, response.status_code)
    await pc.setRemoteDescription(RTCSessionDescription(sdp=response.text, type="answer"))
    return WhipSession(urljoin(url, response.headers["Location"]), pc, token, players)
