"""Real aiortc peers on loopback: publisher -> Room (tap + forward, no decoding) -> subscriber."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable

import aiortc.codecs
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs.opus import OpusDecoder
from aiortc.codecs.vpx import Vp8Decoder
from tests.integration.media.roomtape_media_peers import (
    CounterVideoTrack,
    Subscriber,
    ToneAudioTrack,
    accept_answer,
    dominant_frequency,
    no_ice_servers,
    publisher_offer,
)

from roomtape.media.frame import VIDEO_TIME_BASE, EncodedFrame
from roomtape.media.room import Room, RoomEvent

pytestmark = pytest.mark.timeout(60)


class DecoderCounts:
    def __init__(self) -> None:
        self.vp8 = 0
        self.opus = 0


@pytest.fixture
def decoders(monkeypatch: pytest.MonkeyPatch) -> DecoderCounts:
    """Count every real decoder aiortc creates in this process (one per decoding receiver)."""
    counts = DecoderCounts()

    class CountingVp8(Vp8Decoder):
        def __init__(self) -> None:
            counts.vp8 += 1
            super().__init__()

    class CountingOpus(OpusDecoder):
        def __init__(self) -> None:
            counts.opus += 1
            super().__init__()

    monkeypatch.setattr(aiortc.codecs, "Vp8Decoder", CountingVp8)
    monkeypatch.setattr(aiortc.codecs, "OpusDecoder", CountingOpus)
    return counts


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room("RM_test")
    yield room
    await room.close()


async def start_publisher(
    room: Room, participant_id: str, frequency: float
) -> tuple[RTCPeerConnection, CounterVideoTrack]:
    room.join(participant_id)
    pc = RTCPeerConnection(no_ice_servers())
    video = CounterVideoTrack()
    offer = await publisher_offer(pc, video, ToneAudioTrack(frequency))
    answer = await room.publish(participant_id, offer)
    await accept_answer(pc, answer)
    return pc, video


async def start_subscriber(room: Room, participant_id: str) -> Subscriber:
    room.join(participant_id)
    sub = Subscriber()
    result = await room.subscribe(participant_id, await sub.offer())
    await accept_answer(sub.pc, result.answer)
    return sub


async def wait_for(predicate: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.02)


async def test_subscriber_decodes_forwarded_video_and_audio(room: Room, decoders: DecoderCounts) -> None:
    events: list[RoomEvent] = []
    for name in ("participant_joined", "track_published"):
        room.events.on(name, events.append)
    pub_pc, video = await start_publisher(room, "alice", frequency=440.0)
    sub = await start_subscriber(room, "bob")
    try:
        await wait_for(lambda: len(sub.counters) >= 60 and len(sub.audio) >= 150, within=15)
    finally:
        await sub.close()
        await pub_pc.close()

    # Video: the counters drawn by the publisher come out decodable and in order.
    counters = sub.counters
    assert all(b > a for a, b in itertools.pairwise(counters)), counters
    assert counters[-1] < video.counter
    assert len(counters) >= 60

    # Audio: the subscriber hears alice's 440 Hz tone.
    samples = np.concatenate(sub.audio[-150:])  # the last 3 s
    assert abs(dominant_frequency(samples) - 440.0) < 3.0

    # The server never decoded: only the subscriber's two receivers made decoders, and the server's
    # tracks went through the tap and yielded encoded frames.
    assert (decoders.vp8, decoders.opus) == (1, 1)
    tracks = {t.media: t for t in room.tracks()}
    assert tracks["video"].mime_type.lower() == "video/vp8"
    assert tracks["audio"].mime_type.lower() == "audio/opus"
    for track in tracks.values():
        assert track.tap.frames > 0
        assert isinstance(track.fanout.last_frame, EncodedFrame)
    assert tracks["video"].tap.keyframes >= 1
    last_video = tracks["video"].fanout.last_frame
    assert last_video is not None and last_video.time_base == VIDEO_TIME_BASE
    assert last_video.mime_type == "video/vp8"

    # RTCP sender reports (aiortc sends one every 0.5-1.5 s) were captured and line up with the frames.
    report = tracks["video"].tap.sender_report
    assert report is not None and report.pts is not None
    assert (report.rtp_timestamp - report.pts) % 2**32 == (last_video.rtp_timestamp - last_video.pts) % 2**32
    assert abs(report.wallclock - time.time()) < 10
    assert [(e.name, e.participant_id) for e in events][:2] == [
        ("participant_joined", "alice"),
        ("track_published", "alice"),
    ]


async def test_late_subscriber_gets_keyframe_within_one_second(room: Room, decoders: DecoderCounts) -> None:
    pub_pc, _ = await start_publisher(room, "alice", frequency=660.0)
    early = await start_subscriber(room, "bob")
    late: Subscriber | None = None
    try:
        await wait_for(lambda: len(early.counters) >= 30, within=10)
        # aiortc's VP8 encoder makes a keyframe only every 3000 frames or on PLI: the late subscriber
        # can only start this soon if the room asks the publisher for one.
        await asyncio.sleep(0.5)
        late = await start_subscriber(room, "carol")
        await wait_for(lambda: late is not None and bool(late.counters), within=5)
        assert late.connected_at is not None
        first_picture = late.counter_times[0] - late.connected_at
        print(f"late subscriber: first picture {first_picture:.3f} s after connecting")
        assert first_picture < 1.0, f"first picture {first_picture:.3f} s after connecting"
        await wait_for(lambda: late is not None and len(late.counters) >= 10, within=5)
    finally:
        if late is not None:
            await late.close()
        await early.close()
        await pub_pc.close()

    assert all(b > a for a, b in itertools.pairwise(late.counters))
    assert late.counters[0] > early.counters[0]
    video_track = next(t for t in room.tracks() if t.media == "video")
    # The first subscriber starts on the stream's first keyframe; the late one needed a PLI.
    assert video_track.tap.plis_sent >= 1
    assert video_track.tap.keyframes >= 2


async def test_subscriber_pli_is_relayed_to_the_publisher(room: Room) -> None:
    pub_pc, _ = await start_publisher(room, "alice", frequency=550.0)
    sub = await start_subscriber(room, "bob")
    try:
        await wait_for(lambda: len(sub.counters) >= 15, within=10)
        video_track = next(t for t in room.tracks() if t.media == "video")
        await asyncio.sleep(0.4)  # past the publisher-side rate limit of the subscribe-time request
        plis, keyframes = video_track.tap.plis_sent, video_track.tap.keyframes
        receiver = next(t.receiver for t in sub.pc.getTransceivers() if t.kind == "video")
        (source,) = receiver.getSynchronizationSources()
        # What a browser does on picture loss: PLI to the server's forwarding sender.
        await receiver._send_rtcp_pli(source.source)
        await wait_for(lambda: video_track.tap.keyframes > keyframes, within=2)
        assert video_track.tap.plis_sent == plis + 1
    finally:
        await sub.close()
        await pub_pc.close()
