"""The agent SDK's pieces that need no server: options, stream events, replies, remote audio."""

from __future__ import annotations

import asyncio
import fractions

import av
import jwt
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from roomtape.agents import AudioPushTrack, ClientEvent, RemoteTrack, RoomOptions, SignalingError, Stream
from roomtape.agents.sdk import AgentRoom, _AgentClient, _RemoteAudio


def token() -> str:
    return jwt.encode({"mtg": "M1"}, "x" * 32, algorithm="HS256")


def test_room_options_defaults_and_app_from_jwt(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ROOMTAPE_URL",
        "ROOMTAPE_AUTH_TOKEN",
        "VIDEOSDK_AUTH_TOKEN",
        "ROOMTAPE_ACCOUNT_ID",
        "ROOMTAPE_APP_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    options = RoomOptions(room_id="M1")
    assert (options.name, options.recording) == ("Agent", False)
    assert options.resolved_base_url() == "http://127.0.0.1:8080"
    assert options.resolved_app() == (None, None)
    app_jwt = jwt.encode({"apikey": "app-1"}, "s" * 32, algorithm="HS256")
    monkeypatch.setenv("VIDEOSDK_AUTH_TOKEN", app_jwt)
    monkeypatch.setenv("ROOMTAPE_ACCOUNT_ID", "acc-1")
    assert RoomOptions(room_id="M1").resolved_app() == ("acc-1", "app-1")
    assert RoomOptions(room_id="M1", app_id="app-2").resolved_app() == ("acc-1", "app-2")


async def test_stream_callbacks_follow_publish_mute_unmute_unpublish() -> None:
    client = _AgentClient("http://x", token())
    room = AgentRoom(RoomOptions(room_id="M1"), client, AudioPushTrack())
    enabled: list[Stream] = []
    disabled: list[Stream] = []
    calls: list[str] = []

    async def on_disabled(stream: Stream) -> None:
        calls.append("async")
        disabled.append(stream)

    room.on_stream_enabled = enabled.append
    room.on_stream_disabled = on_disabled
    track = RemoteTrack("T1", "P1", "audio")
    for name in ("track_published", "track_published", "track_muted", "track_unmuted", "track_unpublished"):
        if name == "track_muted":
            track.muted = True
        room._on_client_event(ClientEvent(name, track=track))  # type: ignore[arg-type]
    await asyncio.sleep(0)
    assert enabled == [Stream("P1", "audio", "T1"), Stream("P1", "audio", "T1")]  # duplicates ignored
    assert disabled == [Stream("P1", "audio", "T1")] * 2 and calls == ["async", "async"]
    muted = RemoteTrack("T2", "P2", "video", muted=True)
    room._on_client_event(ClientEvent("track_published", track=muted))
    assert len(enabled) == 2  # a track published muted is not enabled
    assert Stream("P1", "audio", "T1").id == "T1"
    await room._close()


async def test_agent_client_routes_replies_and_errors() -> None:
    client = _AgentClient("http://x", token())
    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)
        if message["type"] == "ping":
            await client._handle({"type": "pong", "t": message["t"], "server": 5.0})
        else:
            await client._handle({"type": "error", "message": "bad item", "request": "transcript"})

    client._send = send  # type: ignore[method-assign,assignment]
    assert (await client.request({"type": "ping", "t": 1.0}, "pong"))["server"] == 5.0
    with pytest.raises(SignalingError, match="bad item"):
        await client.request({"type": "transcript", "events": []}, "transcript_stored")
    assert client.pending is None


class _Tone(MediaStreamTrack):
    kind = "audio"

    def __init__(self, frames: int) -> None:
        super().__init__()
        self.left = frames
        self.pts = 0

    async def recv(self) -> av.AudioFrame:
        if self.left == 0:
            raise MediaStreamError
        self.left -= 1
        pcm = np.full((1, 1920), 1000, dtype=np.int16)  # 20 ms of interleaved stereo, as aiortc decodes Opus
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self.pts, fractions.Fraction(1, 48000)
        self.pts += 960
        return frame


async def test_remote_audio_yields_int16_mono_48k_until_the_track_ends() -> None:
    remote = _RemoteAudio("P1")
    await remote.read(_Tone(5))
    frames = [f async for f in remote]
    assert all(f.dtype == np.int16 and f.ndim == 1 for f in frames)
    assert sum(len(f) for f in frames) == pytest.approx(5 * 960, abs=64)


def test_words_accept_tuples_and_dicts() -> None:
    assert AgentRoom._words([("hi", 1.0, 1.2), {"word": "there", "start": 1.2, "end": 1.5}]) == [
        {"word": "hi", "start": 1.0, "end": 1.2},
        {"word": "there", "start": 1.2, "end": 1.5},
    ]
