"""The agent SDK: a voice agent joins a roomtape meeting, hears the users, speaks, records and reports a transcript.

Shaped after VideoSDK's agents (seed 000) on top of :class:`~roomtape.agents.client.RoomClient`::

    ctx = JobContext(room_options=RoomOptions(room_id="MEETING_ID", name="Agent", recording=True))
    await ctx.connect()
    ctx.room.on_stream_enabled = lambda stream: print("on", stream.participant_id, stream.kind)
    async for participant_id, frames in ctx.room.audio_streams():   # the users' audio
        async for pcm in frames:                                      # numpy int16, mono, 48 kHz
            ...
    start = ctx.room.push_audio(tts_pcm)                              # the agent's voice; when it starts
    await ctx.room.conversation_item_added("assistant", "Hello!", start=start, end=start + 1.2)
    await ctx.shutdown()

Clocks: times the agent reports (``start``/``end``/word times) are on the agent's clock
(:attr:`RoomOptions.clock`, Unix seconds). On connect the SDK measures how far that clock is from the
server's with a few ``ping``/``pong`` exchanges (the one with the shortest round trip wins) and tells the
server (``clock``); the server puts every item on the session clock with it.

Recording (``recording=True``): on connect the SDK starts VideoSDK-style participant track recordings
(``POST /v2/recordings/participant/track/start``, kind ``audio``) for the agent and for every user, users who
join later included, and stops them on :meth:`JobContext.shutdown`. If the server offers RealtimeKit's
composite start (``POST /accounts/{account_id}/realtime/kit/{app_id}/recordings``), it also starts a
composite with ``audio_config = {"channel": "stereo", "channel_map": {"left": "users", "right": "agent",
"agent_participant_id": <the agent's participant id>}}`` (user left, agent right), audio only unless
:attr:`RoomOptions.record_video`; otherwise the reason is in :attr:`AgentRoom.recording_notes`.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import av
import httpx
import jwt
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from roomtape.agents.client import ClientEvent, RemoteTrack, RoomClient, SignalingError, TrackKind
from roomtape.agents.tracks import AUDIO_SAMPLE_RATE, AudioPushTrack
from roomtape.transcripts.clock import ClockOffset

if TYPE_CHECKING:
    import numpy.typing as npt

__all__ = ["AgentRoom", "JobContext", "RoomOptions", "Stream", "StreamCallback"]

logger = logging.getLogger(__name__)

_REPLY_TIMEOUT = 10.0
_AUDIO_QUEUE = 500  # 10 s of 20 ms frames kept per participant before the oldest is dropped


@dataclass
class RoomOptions:
    """Which meeting the agent joins and how (VideoSDK's ``RoomOptions``)."""

    room_id: str
    """The meeting id."""
    name: str = "Agent"
    """The agent's display name."""
    recording: bool = False
    """Record the session: a track file for the agent and each user (and a stereo composite, user left and
    agent right, where the server offers it). Defaults to False."""
    auth_token: str | None = None
    """API token (``rt_…``) or app JWT (claim ``apikey`` = app id) for the REST calls: creating the agent's
    participant and starting recordings. Default: ``$ROOMTAPE_AUTH_TOKEN``, else ``$VIDEOSDK_AUTH_TOKEN``."""
    base_url: str | None = None
    """The roomtape server. Default: ``$ROOMTAPE_URL``, else ``http://127.0.0.1:8080``."""
    participant_token: str | None = None
    """The agent's join token. When None, the SDK adds a participant named :attr:`name` to the meeting with
    :attr:`auth_token` (which then needs :attr:`account_id` and :attr:`app_id`)."""
    account_id: str | None = None
    """The app's account, for RealtimeKit calls (adding the participant, composite recording).
    Default: ``$ROOMTAPE_ACCOUNT_ID``."""
    app_id: str | None = None
    """The app, for RealtimeKit calls. Default: ``$ROOMTAPE_APP_ID``, else the ``apikey`` of a JWT
    :attr:`auth_token`."""
    custom_participant_id: str | None = None
    """Custom participant id of the participant the SDK adds (default: ``agent-<random>``)."""
    clock: Callable[[], float] = time.time
    """The agent's clock (Unix seconds): what ``start``/``end`` of transcript items are measured on."""
    clock_pings: int = 5
    """Ping exchanges on connect to measure the clock offset (the shortest round trip wins)."""
    record_video: bool = False
    """With ``recording``: render the composite with video too (a grid MP4). Default: audio only (Ogg/Opus,
    ``.ogg``: the recorded Opus packets copied, user left and agent right)."""

    def resolved_base_url(self) -> str:
        """The server URL, defaults applied."""
        return (self.base_url or os.environ.get("ROOMTAPE_URL") or "http://127.0.0.1:8080").rstrip("/")

    def resolved_auth_token(self) -> str | None:
        """The REST token, defaults applied."""
        return self.auth_token or os.environ.get("ROOMTAPE_AUTH_TOKEN") or os.environ.get("VIDEOSDK_AUTH_TOKEN")

    def resolved_app(self) -> tuple[str | None, str | None]:
        """``(account_id, app_id)``, defaults applied."""
        account = self.account_id or os.environ.get("ROOMTAPE_ACCOUNT_ID")
        app = self.app_id or os.environ.get("ROOMTAPE_APP_ID")
        token = self.resolved_auth_token()
        if app is None and token and token.count(".") == 2:
            with contextlib.suppress(jwt.PyJWTError):
                claim = jwt.decode(token, options={"verify_signature": False}).get("apikey")
                app = claim if isinstance(claim, str) else None
        return account, app


@dataclass(frozen=True)
class Stream:
    """A participant's track that became enabled (published or unmuted) or disabled (muted or unpublished)."""

    participant_id: str
    """Whose track."""
    kind: TrackKind
    """``audio``, ``video``, ``screen_audio`` or ``screen_video``."""
    track_id: str
    """The track id."""
    local: bool = False
    """True for the agent's own track."""

    @property
    def id(self) -> str:
        """The track id (VideoSDK's ``stream.id``)."""
        return self.track_id


StreamCallback = Callable[[Stream], Any] | Callable[[str, TrackKind], Any]
"""``on_stream_enabled`` / ``on_stream_disabled``: sync or async, called with the :class:`Stream`, or — a
callback that takes two arguments, as in seed 000's ``on_stream_enabled(participant_id, kind="audio")`` —
with the participant id and the track kind."""


def _takes_two(callback: Callable[..., Any]) -> bool:
    """Whether ``callback`` accepts ``(participant_id, kind)`` rather than one :class:`Stream`."""
    try:
        params = inspect.signature(callback).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class _AgentClient(RoomClient):
    """The room client with the agent's extra replies: ``pong`` and ``transcript_stored``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending: asyncio.Future[dict[str, Any]] | None = None
        self.pending_type: str | None = None

    async def _handle(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        pending = self.pending
        if pending is not None and not pending.done():
            if kind in ("pong", "transcript_stored") and kind == self.pending_type:
                pending.set_result(message)
                return
            if kind == "error" and message.get("request") in ("ping", "transcript"):
                pending.set_exception(SignalingError(str(message.get("message"))))
                return
        await super()._handle(message)

    async def request(self, message: Mapping[str, Any], reply: str) -> dict[str, Any]:
        """Send ``message`` and wait for its ``reply`` (the caller serializes requests)."""
        self.pending = asyncio.get_running_loop().create_future()
        self.pending_type = reply
        try:
            await self._send(message)
            return await asyncio.wait_for(self.pending, _REPLY_TIMEOUT)
        finally:
            self.pending = None
            self.pending_type = None


class _RemoteAudio:
    """One remote participant's audio as PCM frames (an async iterator of int16 mono 48 kHz arrays)."""

    def __init__(self, participant_id: str) -> None:
        self.participant_id = participant_id
        self.queue: asyncio.Queue[npt.NDArray[np.int16] | None] = asyncio.Queue(_AUDIO_QUEUE)
        self.task: asyncio.Task[None] | None = None

    def put(self, item: npt.NDArray[np.int16] | None) -> None:
        if self.queue.full():
            with contextlib.suppress(asyncio.QueueEmpty):
                self.queue.get_nowait()
        self.queue.put_nowait(item)

    async def read(self, track: MediaStreamTrack) -> None:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=AUDIO_SAMPLE_RATE)
        try:
            while True:
                frame = await track.recv()
                if not isinstance(frame, av.AudioFrame):
                    continue
                for out in resampler.resample(frame):
                    self.put(out.to_ndarray().reshape(-1).astype(np.int16, copy=False))
        except MediaStreamError:
            pass
        finally:
            self.put(None)

    def __aiter__(self) -> AsyncIterator[npt.NDArray[np.int16]]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[npt.NDArray[np.int16]]:
        while True:
            item = await self.queue.get()
            if item is None:
                return
            yield item


class AgentRoom:
    """The meeting as the agent sees it: :attr:`JobContext.room` after :meth:`JobContext.connect`.

    Args:
        options: The room options.
        client: The joined room client.
        audio: The agent's published voice.
    """

    def __init__(self, options: RoomOptions, client: _AgentClient, audio: AudioPushTrack) -> None:
        self.options = options
        self.client = client
        self.audio = audio
        """The agent's voice: push int16 mono PCM at 48 kHz (or use :meth:`push_audio`)."""
        self.clock_offset = ClockOffset()
        """agent clock - server clock, measured on connect."""
        self.recording_notes: list[str] = []
        """Why part of the recording (``recording=True``) could not be started, if any."""
        self.track_recordings: dict[str, str] = {}
        """Track recording id per recorded participant id (``recording=True``)."""
        self.composite_recording: dict[str, Any] | None = None
        """The composite recording the server started, as it answered (``recording=True``, if offered)."""
        self.on_stream_enabled: StreamCallback | None = None
        """Called when a track is published unmuted or unmuted (the agent's own too, ``local=True``)."""
        self.on_stream_disabled: StreamCallback | None = None
        """Called when an enabled track is muted or unpublished."""
        self._audio: dict[str, _RemoteAudio] = {}
        self._new_audio: asyncio.Queue[_RemoteAudio | None] = asyncio.Queue()
        self._enabled: dict[str, Stream] = {}
        self._lock = asyncio.Lock()
        self._requests = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- identity ------------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The agent's display name."""
        return self.options.name

    @property
    def meeting_id(self) -> str:
        """The meeting id (VideoSDK's room id)."""
        return self.client.meeting_id

    @property
    def participant_id(self) -> str:
        """The agent's participant id."""
        assert self.client.participant_id is not None
        return self.client.participant_id

    @property
    def session_id(self) -> str:
        """The meeting's session."""
        assert self.client.session_id is not None
        return self.client.session_id

    def now(self) -> float:
        """The agent's clock (Unix seconds)."""
        return self.options.clock()

    # --- audio ---------------------------------------------------------------------------------------

    def push_audio(self, pcm: bytes | npt.NDArray[np.int16]) -> float:
        """Queue the agent's speech (int16 mono, 48 kHz).

        Returns:
            When its first sample is due to go out (its place on the track's timeline, see
            :attr:`AudioPushTrack.due_in`), on the agent's clock: the ``start`` of the matching transcript item.
        """
        start = self.now() + self.audio.due_in
        self.audio.push(pcm)
        return start

    def participant_audio(self, participant_id: str) -> AsyncIterator[npt.NDArray[np.int16]]:
        """A remote participant's audio frames (int16 mono 48 kHz), from when it arrived, until it ends."""
        return aiter(self._remote_audio(participant_id))

    async def audio_streams(self) -> AsyncIterator[tuple[str, AsyncIterator[npt.NDArray[np.int16]]]]:
        """Yield ``(participant_id, frames)`` for every remote participant whose audio arrives."""
        while True:
            remote = await self._new_audio.get()
            if remote is None:
                return
            yield remote.participant_id, aiter(remote)

    def _remote_audio(self, participant_id: str) -> _RemoteAudio:
        remote = self._audio.get(participant_id)
        if remote is None:
            remote = self._audio[participant_id] = _RemoteAudio(participant_id)
        return remote

    def _on_track(self, event: ClientEvent) -> None:
        remote = event.track
        if remote is None or remote.track is None or remote.kind != "audio":
            return
        audio = self._remote_audio(remote.participant_id)
        if audio.task is not None and not audio.task.done():
            audio.task.cancel()
        audio.queue = asyncio.Queue(_AUDIO_QUEUE)
        audio.task = self._spawn(audio.read(remote.track))
        self._new_audio.put_nowait(audio)

    # --- stream events -------------------------------------------------------------------------------

    def _stream(self, track: RemoteTrack) -> Stream:
        return Stream(track.participant_id, track.kind, track.id)

    def _enable(self, stream: Stream) -> None:
        if stream.track_id in self._enabled:
            return
        self._enabled[stream.track_id] = stream
        self._call(self.on_stream_enabled, stream)

    def _disable(self, track_id: str) -> None:
        stream = self._enabled.pop(track_id, None)
        if stream is not None:
            self._call(self.on_stream_disabled, stream)

    def _call(self, callback: StreamCallback | None, stream: Stream) -> None:
        if callback is None:
            return
        try:
            call: Callable[..., Any] = callback
            result = call(stream.participant_id, stream.kind) if _takes_two(call) else call(stream)
        except Exception:
            logger.exception("stream callback failed")
            return
        if inspect.isawaitable(result):
            self._spawn(result)

    def _on_client_event(self, event: ClientEvent) -> None:
        track = event.track
        if track is None:
            return
        if (event.name == "track_published" and not track.muted) or event.name == "track_unmuted":
            self._enable(self._stream(track))
        elif event.name in ("track_unpublished", "track_muted"):
            self._disable(track.id)

    async def set_muted(self, muted: bool) -> None:
        """Mute or unmute the agent's voice (others get ``on_stream_disabled``/``on_stream_enabled``)."""
        await self.client.set_muted("audio", muted)
        track_id = self.client.published.get("audio")
        if track_id is not None:
            if muted:
                self._disable(track_id)
            else:
                self._enable(Stream(self.participant_id, "audio", track_id, local=True))

    # --- clock ---------------------------------------------------------------------------------------

    async def measure_clock(self, pings: int | None = None) -> ClockOffset:
        """Measure the agent clock's offset from the server's (``ping``/``pong``) and tell the server.

        Returns:
            The measurement with the shortest round trip (zero offset if the server does not answer pings).
        """
        offsets: list[ClockOffset] = []
        async with self._lock:
            for _ in range(pings or self.options.clock_pings):
                sent = self.now()
                try:
                    pong = await self.client.request({"type": "ping", "t": sent}, "pong")
                except (SignalingError, TimeoutError) as exc:
                    self.recording_notes.append(f"clock offset not measured: {exc}")
                    return self.clock_offset
                offsets.append(ClockOffset.from_ping(sent, float(pong["server"]), self.now()))
        self.clock_offset = ClockOffset.best_of(offsets)
        await self.client._send(
            {"type": "clock", "offset": self.clock_offset.seconds, "uncertainty": self.clock_offset.uncertainty}
        )
        return self.clock_offset

    # --- transcript ----------------------------------------------------------------------------------

    async def send_transcript(self, events: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Send transcript events (``conversation_item_added`` / ``user_input_transcribed`` shapes).

        Returns:
            The stored items: ``{id, start, end}`` with times on the session clock.

        Raises:
            SignalingError: the server refused them (nothing was stored).
        """
        async with self._lock:
            message = {
                "type": "transcript",
                "request_id": next(self._requests),
                "events": list(events),
                "clock_offset": self.clock_offset.seconds,
            }
            reply = await self.client.request(message, "transcript_stored")
        return list(reply.get("items", []))

    @staticmethod
    def _words(words: Iterable[Any] | None) -> list[dict[str, Any]]:
        out = []
        for w in words or ():
            if isinstance(w, Mapping):
                out.append(dict(w))
            else:
                word, start, end = w
                out.append({"word": word, "start": start, "end": end})
        return out

    async def conversation_item_added(
        self,
        role: str,
        text: str,
        interrupted: bool = False,
        start: float | None = None,
        end: float | None = None,
        words: Iterable[Any] | None = None,
        *,
        spoken_text: str | None = None,
        item_id: str | None = None,
    ) -> dict[str, Any]:
        """Report a message of the conversation (LiveKit's ``conversation_item_added``).

        Args:
            role: ``assistant``, ``user``, ``system`` or ``developer``.
            text: The message.
            interrupted: The speaker was cut off.
            start: When the speech started, on the agent's clock.
            end: When it ended, on the agent's clock.
            words: ``(word, start, end)`` tuples or ``{word, start, end}`` dicts, on the agent's clock.
            spoken_text: When interrupted, the part actually heard.
            item_id: The item's id (resending an id replaces the item).

        Returns:
            The stored item: ``{id, start, end}`` on the session clock.
        """
        event: dict[str, Any] = {
            "type": "conversation_item_added",
            "role": role,
            "text": text,
            "interrupted": interrupted,
            "clock": "agent",
            "created_at": self.now(),
            "channel": "right" if role == "assistant" else "left" if role == "user" else None,
        }
        optional = {"start": start, "end": end, "spoken_text": spoken_text, "id": item_id}
        event.update({k: v for k, v in optional.items() if v is not None})
        if role == "assistant":
            event["participant_id"] = self.participant_id
        if words:
            event["words"] = self._words(words)
        return (await self.send_transcript([event]))[0]

    async def user_input_transcribed(
        self,
        transcript: str,
        is_final: bool,
        speaker_id: str | None = None,
        language: str | None = None,
        start: float | None = None,
        end: float | None = None,
        *,
        participant_id: str | None = None,
        words: Iterable[Any] | None = None,
    ) -> dict[str, Any]:
        """Report speech-to-text output for a user (LiveKit's ``user_input_transcribed``).

        Args:
            transcript: The text.
            is_final: False for an interim result (replaced by the next one of the utterance).
            speaker_id: Speaker label.
            language: Language code.
            start: When the speech started, on the agent's clock.
            end: When it ended, on the agent's clock.
            participant_id: The user (default: the only remote participant, if there is one).
            words: Word timings, as for :meth:`conversation_item_added`.

        Returns:
            The stored item: ``{id, start, end}`` on the session clock.
        """
        if participant_id is None and len(self.client.participants) == 1:
            participant_id = next(iter(self.client.participants))
        event: dict[str, Any] = {
            "type": "user_input_transcribed",
            "transcript": transcript,
            "is_final": is_final,
            "clock": "agent",
            "created_at": self.now(),
            "channel": "left",
        }
        optional = {
            "speaker_id": speaker_id,
            "language": language,
            "start": start,
            "end": end,
            "participant_id": participant_id,
        }
        event.update({k: v for k, v in optional.items() if v is not None})
        if words:
            event["words"] = self._words(words)
        return (await self.send_transcript([event]))[0]

    # --- tasks ---------------------------------------------------------------------------------------

    def _spawn(self, awaitable: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(awaitable)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for remote in self._audio.values():
            remote.put(None)
        self._new_audio.put_nowait(None)


class _Recorder:
    """Starts and stops the recordings of ``recording=True``."""

    def __init__(self, room: AgentRoom, http: httpx.AsyncClient) -> None:
        self.room = room
        self.http = http
        self.account_id, self.app_id = room.options.resolved_app()

    def _rtk(self, path: str) -> str | None:
        if not self.account_id or not self.app_id:
            return None
        return f"/accounts/{self.account_id}/realtime/kit/{self.app_id}{path}"

    async def track(self, participant_id: str, action: str = "start") -> None:
        room = self.room
        if action == "start" and participant_id in room.track_recordings:
            return
        body = {"roomId": room.meeting_id, "participantId": participant_id, "kind": "audio"}
        if action == "start":
            body["fileFormat"] = "webm"
        try:
            response = await self.http.post(f"/v2/recordings/participant/track/{action}", json=body)
        except httpx.HTTPError as exc:
            room.recording_notes.append(f"track recording {action} for {participant_id} failed: {exc}")
            return
        if response.status_code >= 300:
            room.recording_notes.append(
                f"track recording {action} for {participant_id}: HTTP {response.status_code} {response.text}"
            )
            return
        if action == "start":
            room.track_recordings[participant_id] = str(response.json()["recordingId"])

    async def composite(self) -> None:
        room = self.room
        path = self._rtk("/recordings")
        if path is None:
            room.recording_notes.append("composite recording not started: account_id/app_id unknown")
            return
        audio_config: dict[str, Any] = {
            "channel": "stereo",
            "channel_map": {"left": "users", "right": "agent", "agent_participant_id": room.participant_id},
        }
        body: dict[str, Any] = {"meeting_id": room.meeting_id, "audio_config": audio_config}
        if not room.options.record_video:
            # An audio-only composite in Ogg/Opus: user and agent each on one channel, so the server copies the
            # recorded Opus packets instead of decoding and re-encoding (bench/audio_composite.py: ~1000x real time).
            body["video_config"] = {"export_file": False}
            audio_config["codec"] = "OPUS"
        response = await self.http.post(path, json=body)
        if response.status_code in (400, 422) and "OPUS" in response.text and "codec" in audio_config:
            # A server without the OPUS extension: its default audio-only format (AAC in .m4a).
            audio_config.pop("codec")
            response = await self.http.post(path, json=body)
        if response.status_code in (400, 422) and "channel_map" in response.text:
            # A server without the channel map: stereo only (the left/right split is then the server's choice).
            audio_config.pop("channel_map")
            response = await self.http.post(path, json=body)
            if response.status_code < 300:
                room.recording_notes.append("composite started without channel_map (server refused it)")
        if response.status_code in (404, 405):
            room.recording_notes.append(
                f"composite recording not offered by this server (POST {path}: HTTP {response.status_code})"
            )
            return
        if response.status_code >= 300:
            room.recording_notes.append(f"composite recording failed: HTTP {response.status_code} {response.text}")
            return
        data = response.json().get("data", response.json())
        room.composite_recording = data.get("recording", data) if isinstance(data, dict) else None

    async def stop(self) -> None:
        for participant_id in list(self.room.track_recordings):
            await self.track(participant_id, "stop")
        composite = self.room.composite_recording
        path = self._rtk(f"/recordings/{composite.get('id')}") if composite else None
        if path is not None:
            response = await self.http.put(path, json={"action": "stop"})
            if response.status_code >= 300:
                self.room.recording_notes.append(f"composite stop: HTTP {response.status_code} {response.text}")


@dataclass
class JobContext:
    """One agent job: connect to the room, run, shut down (VideoSDK's ``JobContext``).

    Args:
        room_options: Which room and how.
    """

    room_options: RoomOptions
    _room: AgentRoom | None = field(default=None, init=False, repr=False)
    _http: httpx.AsyncClient | None = field(default=None, init=False, repr=False)
    _recorder: _Recorder | None = field(default=None, init=False, repr=False)
    _shutdown_callbacks: list[Callable[[], Any]] = field(default_factory=list, init=False, repr=False)

    @property
    def room(self) -> AgentRoom:
        """The joined room.

        Raises:
            RuntimeError: before :meth:`connect`.
        """
        if self._room is None:
            raise RuntimeError("call `await ctx.connect()` first")
        return self._room

    def add_shutdown_callback(self, callback: Callable[[], Any]) -> None:
        """Run ``callback`` (sync or async) at :meth:`shutdown`, before leaving."""
        self._shutdown_callbacks.append(callback)

    async def _participant_token(self, options: RoomOptions, http: httpx.AsyncClient) -> str:
        if options.participant_token:
            return options.participant_token
        account, app = options.resolved_app()
        if not (account and app and options.resolved_auth_token()):
            raise ValueError("RoomOptions needs participant_token, or auth_token with account_id and app_id")
        response = await http.post(
            f"/accounts/{account}/realtime/kit/{app}/meetings/{options.room_id}/participants",
            json={
                "name": options.name,
                "preset_name": "group_call_host",
                "custom_participant_id": options.custom_participant_id or f"agent-{os.urandom(4).hex()}",
            },
        )
        if response.status_code >= 300:
            raise SignalingError(f"could not add the agent to the meeting: HTTP {response.status_code} {response.text}")
        return str(response.json()["data"]["token"])

    async def connect(self) -> AgentRoom:
        """Join the room, publish the agent's voice, measure the clock offset and (``recording``) record.

        Returns:
            The room (also :attr:`room`).
        """
        options = self.room_options
        token = options.resolved_auth_token()
        headers = {"Authorization": token} if token else {}
        self._http = http = httpx.AsyncClient(base_url=options.resolved_base_url(), headers=headers, timeout=15)
        client = _AgentClient(
            options.resolved_base_url(), await self._participant_token(options, http), meeting_id=options.room_id
        )
        audio = AudioPushTrack()
        room = AgentRoom(options, client, audio)
        self._room = room
        client.on("track", room._on_track)
        for name in ("track_published", "track_unpublished", "track_muted", "track_unmuted"):
            client.on(name, room._on_client_event)
        await client.join()
        for existing in list(client.tracks.values()):
            if not existing.muted:
                room._enable(room._stream(existing))
        published = await client.publish(audio=audio)
        room._enable(Stream(room.participant_id, "audio", published["audio"], local=True))
        await room.measure_clock()
        if options.recording:
            recorder = self._recorder = _Recorder(room, http)
            client.on(
                "participant_joined",
                lambda e: room._spawn(recorder.track(e.participant.id)) if e.participant else None,
            )
            for participant_id in [room.participant_id, *client.participants]:
                await recorder.track(participant_id)
            await recorder.composite()
            for note in room.recording_notes:
                logger.info("recording: %s", note)
        return room

    async def shutdown(self) -> None:
        """Run the shutdown callbacks, stop the recordings (``recording=True``), leave. Idempotent."""
        room = self._room
        for callback in self._shutdown_callbacks:
            try:
                result = callback()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("shutdown callback failed")
        self._shutdown_callbacks.clear()
        if self._recorder is not None:
            await self._recorder.stop()
            self._recorder = None
        if room is not None:
            await room.client.leave()
            await room._close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> AgentRoom:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()
