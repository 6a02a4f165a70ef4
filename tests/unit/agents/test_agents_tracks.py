from __future__ import annotations

import numpy as np
import pytest
from av import AudioFrame, VideoFrame

import roomtape.agents
from roomtape.agents import AudioPushTrack, MuteGate, VideoPushTrack
from roomtape.agents.client import _meeting_of
from roomtape.domain.tokens import sign_participant_token


async def test_audio_push_track_sends_pushed_pcm_then_silence() -> None:
    track = AudioPushTrack()
    track.push(np.arange(1, 1201, dtype=np.int16))  # 25 ms: one frame and a quarter
    first = await track.recv()
    second = await track.recv()
    assert isinstance(first, AudioFrame) and (first.samples, first.sample_rate, first.pts) == (960, 48000, 0)
    assert first.to_ndarray().reshape(-1).tolist() == list(range(1, 961))
    rest = second.to_ndarray().reshape(-1)
    assert second.pts == 960 and rest[:240].tolist() == list(range(961, 1201)) and not rest[240:].any()
    track.stop()


def test_audio_push_track_drops_the_oldest_beyond_its_bound() -> None:
    track = AudioPushTrack(max_buffered=0.1)
    track.push(np.zeros(48000, dtype=np.int16))
    assert track.buffered <= 0.1


async def test_video_push_track_repeats_the_latest_picture_on_its_clock() -> None:
    track = VideoPushTrack(width=64, height=48, fps=50)
    black = await track.recv()
    assert (black.width, black.height) == (64, 48) and black.to_ndarray(format="yuv420p")[:48].max() == 16
    track.push(np.full((48, 64, 3), 255, dtype=np.uint8))
    white, again = await track.recv(), await track.recv()
    assert white.to_ndarray(format="yuv420p")[:48].min() > 200
    assert again.pts - white.pts == 90000 // 50
    track.stop()


async def test_mute_gate_blanks_audio_and_video_while_muted() -> None:
    audio = AudioPushTrack()
    audio.push(np.full(960 * 2, 1000, dtype=np.int16))
    gate = MuteGate(audio)
    assert (await gate.recv()).to_ndarray().min() == 1000
    gate.muted = True
    silent = await gate.recv()
    assert isinstance(silent, AudioFrame) and not silent.to_ndarray().any() and silent.pts == 960

    video = VideoPushTrack(width=32, height=32)
    video.push(np.full((32, 32, 3), 255, dtype=np.uint8))
    vgate = MuteGate(video)
    vgate.muted = True
    black = await vgate.recv()
    assert isinstance(black, VideoFrame) and black.to_ndarray(format="yuv420p")[:32].max() == 16
    gate.stop()
    vgate.stop()
    assert audio.readyState == "ended"


def test_meeting_is_read_from_the_token() -> None:
    token = sign_participant_token("k", app_id="a", meeting_id="m1", participant_id="p", version=0, ttl_secs=60)
    assert _meeting_of(token) == "m1"
    with pytest.raises(Exception):  # noqa: B017 - any decoding error will do
        _meeting_of("garbage")


def test_public_surface() -> None:
    assert set(roomtape.agents.__all__) == {
        "AUDIO_SAMPLE_RATE",
        "AgentRoom",
        "AudioPushTrack",
        "ChatMessage",
        "JobContext",
        "RoomOptions",
        "Stream",
        "StreamCallback",
        "ClientEvent",
        "ClientEventName",
        "JoinError",
        "MuteGate",
        "RemoteParticipant",
        "RemoteTrack",
        "RoomClient",
        "SignalingError",
        "TrackKind",
        "TrackSource",
        "VideoPushTrack",
        "WhipError",
        "WhipSession",
        "whip_publish",
    }
    for name in roomtape.agents.__all__:
        assert hasattr(roomtape.agents, name)
