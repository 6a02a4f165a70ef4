from __future__ import annotations

import asyncio

import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from roomtape.media.forward import ForwardTrack, Subscription, TrackFanout
from roomtape.media.frame import AUDIO_TIME_BASE, VIDEO_TIME_BASE, EncodedFrame


def video(n: int, keyframe: bool = False) -> EncodedFrame:
    return EncodedFrame(
        data=bytes([0 if keyframe else 1]) + n.to_bytes(4, "big"),
        pts=n * 3000,
        time_base=VIDEO_TIME_BASE,
        rtp_timestamp=n * 3000,
        keyframe=keyframe,
        mime_type="video/vp8",
        received_at=0.0,
    )


def audio(n: int) -> EncodedFrame:
    return EncodedFrame(
        data=n.to_bytes(4, "big"),
        pts=n * 960,
        time_base=AUDIO_TIME_BASE,
        rtp_timestamp=n * 960,
        keyframe=True,
        mime_type="audio/opus",
        received_at=0.0,
    )


def drain(sub: Subscription) -> list[int]:
    return [sub._frames.popleft().pts // 3000 for _ in range(len(sub))]


def test_video_subscription_starts_at_a_keyframe() -> None:
    sub = Subscription("video", max_frames=10)
    assert sub.needs_keyframe
    for n in range(3):
        sub.push(video(n))
    sub.push(video(3, keyframe=True))
    sub.push(video(4))
    assert drain(sub) == [3, 4]
    assert sub.dropped == 3 and not sub.needs_keyframe


def test_slow_subscriber_drops_backlog_then_waits_for_keyframe() -> None:
    requests: list[int] = []
    sub = Subscription("video", max_frames=4, on_keyframe_needed=lambda: requests.append(1))
    sub.push(video(0, keyframe=True))
    for n in range(1, 4):
        sub.push(video(n))
    assert len(sub) == 4
    sub.push(video(4))  # overflow: backlog is dropped, no keyframe to restart from
    assert len(sub) == 0 and sub.needs_keyframe and requests == [1]
    for n in range(5, 8):
        sub.push(video(n))  # inter frames that reference lost pictures: skipped
    assert len(sub) == 0
    sub.push(video(8, keyframe=True))
    sub.push(video(9))
    assert drain(sub) == [8, 9]
    assert sub.dropped == 4 + 1 + 3
    assert requests == [1]  # asked once, not per skipped frame


def test_overflow_on_a_keyframe_restarts_from_it() -> None:
    sub = Subscription("video", max_frames=2)
    sub.push(video(0, keyframe=True))
    sub.push(video(1))
    sub.push(video(2, keyframe=True))
    assert drain(sub) == [2] and not sub.needs_keyframe


def test_audio_never_waits_and_stays_bounded() -> None:
    sub = Subscription("audio", max_frames=3)
    assert not sub.needs_keyframe
    for n in range(10):
        sub.push(audio(n))
    assert len(sub) <= 3
    assert sub.dropped + len(sub) == 10


async def test_get_waits_and_close_ends_after_queued_frames() -> None:
    sub = Subscription("audio")
    getter = asyncio.ensure_future(sub.get())
    await asyncio.sleep(0)
    assert not getter.done()
    sub.push(audio(1))
    assert (await getter).pts == 960
    sub.push(audio(2))
    sub.close()
    assert (await sub.get()).pts == 1920
    with pytest.raises(MediaStreamError):
        await sub.get()
    sub.push(audio(3))  # ignored once closed
    assert len(sub) == 0


class QueueTrack(MediaStreamTrack):
    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[EncodedFrame | None] = asyncio.Queue()

    async def recv(self) -> EncodedFrame:  # type: ignore[override]  # a tapped track's frames
        frame = await self.queue.get()
        if frame is None:
            raise MediaStreamError
        return frame


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fanout_feeds_fast_subscriber_while_slow_one_drops() -> None:
    source = QueueTrack("video")
    requests: list[float] = []
    fanout = TrackFanout(source, request_keyframe=lambda: requests.append(0), max_frames=5)
    fanout.start()
    fast, slow = fanout.subscribe(), fanout.subscribe()
    assert len(requests) == 2  # one keyframe request per new video subscriber
    received: list[int] = []

    async def consume() -> None:
        async for frame in fast:
            received.append(frame.pts // 3000)

    consumer = asyncio.ensure_future(consume())
    source.queue.put_nowait(video(0, keyframe=True))
    for n in range(1, 20):
        source.queue.put_nowait(video(n))
        await settle()
    assert received == list(range(20))
    assert len(slow) == 0 and slow.needs_keyframe and slow.dropped > 0
    source.queue.put_nowait(None)  # the publisher's track ends
    await settle()
    await consumer
    assert fast.closed and slow.closed
    await fanout.aclose()


async def test_fanout_repeats_keyframe_request_while_someone_waits() -> None:
    source = QueueTrack("video")
    requests: list[int] = []
    fanout = TrackFanout(source, request_keyframe=lambda: requests.append(0), keyframe_retry=0.01)
    fanout.start()
    sub = fanout.subscribe()
    await asyncio.sleep(0.05)
    assert len(requests) >= 3  # the first request may be lost or rate-limited: keep asking
    source.queue.put_nowait(video(0, keyframe=True))
    await asyncio.sleep(0.02)
    settled = len(requests)
    await asyncio.sleep(0.05)
    assert len(requests) == settled  # nobody waits any more
    assert not sub.needs_keyframe
    await fanout.aclose()


async def test_unsubscribe_detaches_and_audio_needs_no_keyframe_request() -> None:
    source = QueueTrack("audio")
    requests: list[int] = []
    fanout = TrackFanout(source, request_keyframe=lambda: requests.append(0))
    fanout.start()
    sub = fanout.subscribe()
    assert requests == []
    assert fanout.subscriptions == (sub,)
    await sub.aclose()
    assert len(fanout.subscriptions) == 0
    await fanout.aclose()
    assert fanout.subscribe().closed  # after the end, new subscriptions are closed at once


async def test_forward_track_returns_fresh_packets_and_stops_with_source() -> None:
    source = QueueTrack("video")
    fanout = TrackFanout(source)
    fanout.start()
    track = ForwardTrack(fanout.subscribe())
    assert track.kind == "video"
    source.queue.put_nowait(video(7, keyframe=True))
    packet = await track.recv()
    assert (packet.pts, packet.time_base, packet.is_keyframe) == (21000, VIDEO_TIME_BASE, True)
    assert bytes(packet) == video(7, keyframe=True).data
    source.queue.put_nowait(None)
    with pytest.raises(MediaStreamError):
        await track.recv()
    assert track.readyState == "ended"
    await fanout.aclose()


def sized(n: int, width: int, height: int) -> EncodedFrame:
    frame = video(n, keyframe=True)
    return EncodedFrame(
        data=frame.data,
        pts=frame.pts,
        time_base=frame.time_base,
        rtp_timestamp=frame.rtp_timestamp,
        keyframe=True,
        mime_type=frame.mime_type,
        received_at=0.0,
        width=width,
        height=height,
    )


async def test_fanout_drops_pictures_above_the_size_limit_until_a_keyframe_fits() -> None:
    source = QueueTrack("video")
    fanout = TrackFanout(source)
    told: list[tuple[int, int]] = []
    fanout.limit_size((640, 480), told.append)
    fanout.start()
    sub = fanout.subscribe()
    frames = [
        sized(0, 1280, 720),  # too large: dropped with the inter frames after it
        video(1),
        video(2),
        sized(3, 1280, 720),  # still too large: not told again
        sized(4, 480, 640),  # portrait VGA fits
        video(5),
        sized(6, 1920, 1080),
        video(7),
    ]
    for f in frames:
        source.queue.put_nowait(f)
    await settle()
    await settle()
    assert drain(sub) == [4, 5]
    assert told == [(1280, 720), (1920, 1080)]
    assert fanout.over_limit_dropped == 6
    await fanout.aclose()
