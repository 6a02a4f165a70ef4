"""Peer processes for ``bench/forwarding.py``: publishers, subscribers and a naive decode/re-encode SFU.

Each worker process runs one asyncio loop and executes commands sent by the orchestrator over a
``multiprocessing`` pipe: ``(method name, args)`` in, ``("ok", result)`` or ``("error", traceback)`` out.

- The publisher sends a pre-encoded 640x480 30 fps VP8 file (made once with PyAV), looped with increasing
  timestamps and packed by aiortc without encoding, so its own cost stays out of the way. A PLI from the
  server makes it jump to the next keyframe of the file, as an encoder would send one.
- CPU-phase subscribers replace aiortc's decoder by a counter (``install_counting_decoder``): they receive
  every frame through SRTP, RTP and the jitter buffer and count frames and bytes, without decoding.
- The join-latency worker decodes normally: its figure is the first *decoded* picture.
- The baseline SFU decodes the publisher (plain aiortc receiver) and re-encodes once per subscriber
  (``MediaRelay.subscribe`` + aiortc's VP8 encoder), like the aiortc ``server`` example.
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import os
import statistics
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.contrib.media import MediaRelay
from aiortc.mediastreams import MediaStreamError

WIDTH, HEIGHT, FPS = 640, 480, 30
LOOP_FRAMES = 150  # 5 s of video; keyframes every GOP frames
GOP = 60
VIDEO_TIME_BASE = fractions.Fraction(1, 90000)
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)
PTIME = 0.02  # seconds of audio per Opus packet


# ------------------------------------------------------------------------------------------------ media
def make_video_file(path: Path) -> dict[str, Any]:
    """Encode 5 s of moving 640x480 VP8 at about 1.5 Mbit/s into a WebM file (PyAV, libvpx realtime)."""
    rng = np.random.default_rng(1)
    # Smooth moving content (noise scaled up 16x) so libvpx spends a realistic bit rate.
    small = rng.integers(0, 255, (HEIGHT * 2 // 16, WIDTH * 2 // 16, 3), dtype=np.uint8)
    texture = np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))
    with av.open(str(path), "w", format="webm") as out:
        stream = out.add_stream("libvpx", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.bit_rate = 1_500_000
        stream.codec_context.gop_size = GOP
        stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
        for i in range(LOOP_FRAMES):
            y, x = (i * 3) % HEIGHT, (i * 5) % WIDTH
            img = np.ascontiguousarray(texture[y : y + HEIGHT, x : x + WIDTH])
            frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    packets = read_packets(path)
    return {
        "frames": len(packets),
        "keyframes": sum(key for _, key in packets),
        "bitrate_bps": round(sum(len(d) for d, _ in packets) * 8 / (len(packets) / FPS)),
    }


def read_packets(path: Path) -> list[tuple[bytes, bool]]:
    """The file's VP8 frames in order, with their keyframe flags."""
    with av.open(str(path)) as container:
        return [(bytes(p), p.is_keyframe) for p in container.demux(video=0) if p.size]


class LoopTrack(MediaStreamTrack):
    """Sends a file's encoded frames in real time, looped, with increasing timestamps (no encoding).

    ``request_keyframe`` (called on a PLI) makes the next frame the file's next keyframe.
    """

    kind = "video"

    def __init__(self, packets: list[tuple[bytes, bool]]) -> None:
        super().__init__()
        self._packets = packets
        self._keyframes = [i for i, (_, key) in enumerate(packets) if key]
        self._sent = 0
        self._pos = 0
        self._start: float | None = None
        self._want_keyframe = False
        self.keyframe_requests = 0

    def request_keyframe(self) -> None:
        self.keyframe_requests += 1
        self._want_keyframe = True

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            await asyncio.sleep(max(0.0, self._start + self._sent / FPS - now))
        if self._want_keyframe:
            self._want_keyframe = False
            if not self._packets[self._pos][1]:
                self._pos = next((k for k in self._keyframes if k > self._pos), self._keyframes[0])
        data, key = self._packets[self._pos]
        packet = av.Packet(data)
        packet.pts, packet.time_base, packet.is_keyframe = self._sent * 3000, VIDEO_TIME_BASE, key
        self._sent += 1
        self._pos = (self._pos + 1) % len(self._packets)
        return packet


def make_opus_packets(count: int = 250) -> list[bytes]:
    """20 ms Opus packets of a 440 Hz tone (48 kHz stereo, libopus defaults: ~40 kbit/s), encoded once."""
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48000, "stereo", "s16"
    ctx.time_base = fractions.Fraction(1, 48000)
    ctx.options = {"frame_duration": "20"}
    t = np.arange(960 * (count + 4)) / 48000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out: list[bytes] = []
    for i in range(count + 4):
        chunk = tone[i * 960 : (i + 1) * 960]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out[:count]


class OpusLoopTrack(MediaStreamTrack):
    """Pre-encoded 20 ms Opus packets in real time, looped, packed by aiortc without encoding."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self._packets = packets
        self._sent = 0
        self._start: float | None = None

    async def recv(self) -> av.Packet:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        else:
            await asyncio.sleep(max(0.0, self._start + self._sent * PTIME - now))
        packet = av.Packet(self._packets[self._sent % len(self._packets)])
        packet.pts, packet.time_base = self._sent * 960, AUDIO_TIME_BASE
        self._sent += 1
        return packet


def _route_plis_to_loop_tracks() -> None:
    """A PLI on a sender fed by a :class:`LoopTrack` (maybe behind a MuteGate) makes it jump to a keyframe."""
    original = RTCRtpSender._send_keyframe

    def send_keyframe(self: RTCRtpSender) -> None:
        original(self)
        track = self.track
        track = getattr(track, "source", track)
        if isinstance(track, LoopTrack):
            track.request_keyframe()

    RTCRtpSender._send_keyframe = send_keyframe  # type: ignore[method-assign]


class _CountingDecoder:
    """Stands in for aiortc's decoder: returns ``(bytes, rtp timestamp)`` per received frame."""

    def decode(self, encoded_frame: Any) -> list[tuple[int, int]]:
        return [(len(encoded_frame.data), encoded_frame.timestamp)]


def install_counting_decoder() -> None:
    """Every receiver of this process counts frames instead of decoding them."""
    import aiortc.rtcrtpreceiver as rx

    rx.get_decoder = lambda codec: _CountingDecoder()


def _loopback_ice() -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def _config() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])


# ------------------------------------------------------------------------------------------- counting
@dataclass
class Count:
    frames: int = 0
    bytes: int = 0
    first_at: float | None = None
    decoded: bool = False


def count_track(track: MediaStreamTrack, into: Count) -> asyncio.Task[None]:
    async def run() -> None:
        with contextlib.suppress(MediaStreamError, asyncio.CancelledError):
            while True:
                item = await track.recv()
                if into.first_at is None:
                    into.first_at = time.monotonic()
                into.frames += 1
                if isinstance(item, tuple):
                    into.bytes += item[0]
                elif isinstance(item, av.VideoFrame):
                    into.decoded = True

    return asyncio.ensure_future(run())


async def _until(predicate: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


# -------------------------------------------------------------------------------------------- the peers
class Peers:
    """Everything a worker process can do; methods are the commands."""

    def __init__(self) -> None:
        self.clients: list[Any] = []
        self.pcs: list[RTCPeerConnection] = []
        self.counts: list[Count] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.loop_tracks: list[LoopTrack] = []
        self.packets: list[tuple[bytes, bool]] = []
        self.kind = "video"  # what this worker publishes, subscribes to and counts
        # baseline SFU
        self.relay: MediaRelay | None = None
        self.source: MediaStreamTrack | None = None
        self.source_ready = asyncio.Event()

    async def setup(self, video_path: str | None, counting: bool, kind: str = "video") -> int:
        _loopback_ice()
        _route_plis_to_loop_tracks()
        if counting:
            install_counting_decoder()
        if video_path:
            self.packets = read_packets(Path(video_path))
        self.kind = kind
        if kind == "audio":
            self.opus = make_opus_packets()
        return os.getpid()

    def _loop_track(self) -> LoopTrack:
        track = LoopTrack(self.packets)
        self.loop_tracks.append(track)
        return track

    def _source_track(self) -> MediaStreamTrack:
        """What this worker publishes: the looped VP8 file, or looped Opus packets for ``kind="audio"``."""
        return OpusLoopTrack(self.opus) if self.kind == "audio" else self._loop_track()

    def _on_client_track(self, event: Any) -> None:
        if event.track is not None and event.track.kind == self.kind and event.track.track is not None:
            count = Count()
            self.counts.append(count)
            self.tasks.append(count_track(event.track.track, count))

    # roomtape ------------------------------------------------------------------------------------------
    async def rt_publish(self, base_url: str, token: str) -> str:
        from roomtape.agents import RoomClient

        client = RoomClient(base_url, token)
        self.clients.append(client)
        await client.join()
        if self.kind == "audio":
            await client.publish(audio=self._source_track())
        else:
            await client.publish(video=self._source_track())
        return client.published[self.kind]

    async def rt_leave_all(self) -> int:
        """Every roomtape client joined so far leaves (its publisher stops); returns how many left."""
        clients, self.clients = self.clients, []
        for client in clients:
            await client.leave()
        return len(clients)

    async def rt_subscribe(self, base_url: str, tokens: list[str], within: float = 20.0) -> int:
        """Join one subscriber per token; return when every subscriber has received a frame of ``kind``."""
        from roomtape.agents import RoomClient

        expected = len(self.counts) + len(tokens)
        for token in tokens:
            client = RoomClient(base_url, token)
            client.on("track", self._on_client_track)
            self.clients.append(client)
            await client.join()
        await _until(
            lambda: len(self.counts) >= expected and all(c.frames > 0 for c in self.counts), within, "first frames"
        )
        return len(self.counts)

    # baseline ------------------------------------------------------------------------------------------
    async def bl_publish_offer(self) -> str:
        pc = RTCPeerConnection(_config())
        self.pcs.append(pc)
        pc.addTransceiver(self._source_track(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)

    async def bl_answer(self, answers: list[str]) -> None:
        """Apply answers to the peer connections still waiting for one, in order."""
        waiting = [pc for pc in self.pcs if pc.signalingState == "have-local-offer"]
        for pc, answer in zip(waiting, answers, strict=True):
            await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    async def bl_subscribe_offers(self, n: int) -> list[str]:
        offers = []
        for _ in range(n):
            pc = RTCPeerConnection(_config())
            self.pcs.append(pc)
            pc.addTransceiver(self.kind, direction="recvonly")
            count = Count()
            self.counts.append(count)

            def on_track(track: MediaStreamTrack, count: Count = count) -> None:
                self.tasks.append(count_track(track, count))

            pc.on("track", on_track)
            await pc.setLocalDescription(await pc.createOffer())
            offers.append(str(pc.localDescription.sdp))
        return offers

    async def wait_first_frames(self, within: float = 20.0) -> int:
        await _until(lambda: all(c.frames > 0 for c in self.counts), within, "first frames")
        return len(self.counts)

    # the naive SFU (runs in its own process) -------------------------------------------------------------
    async def sfu_publisher(self, offer: str) -> str:
        """Receive the publisher's video, decoded by aiortc; drain it so that no frame piles up."""
        self.relay = MediaRelay()
        pc = RTCPeerConnection(_config())
        self.pcs.append(pc)

        def on_track(track: MediaStreamTrack) -> None:
            assert self.relay is not None
            self.source = track
            self.source_ready.set()
            drained = self.relay.subscribe(track, buffered=False)
            self.tasks.append(count_track(drained, Count()))

        pc.on("track", on_track)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        return str(pc.localDescription.sdp)

    async def sfu_subscribers(self, offers: list[str]) -> list[str]:
        """One peer connection per subscriber, each sending ``relay.subscribe(source)``: aiortc re-encodes."""
        await asyncio.wait_for(self.source_ready.wait(), 10)
        assert self.relay is not None and self.source is not None
        answers = []
        for offer in offers:
            pc = RTCPeerConnection(_config())
            self.pcs.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            pc.addTrack(self.relay.subscribe(self.source, buffered=False))
            await pc.setLocalDescription(await pc.createAnswer())
            answers.append(str(pc.localDescription.sdp))
        return answers

    # common --------------------------------------------------------------------------------------------
    async def stats(self) -> dict[str, Any]:
        return {
            "t": time.monotonic(),
            "frames": [c.frames for c in self.counts],
            "bytes": [c.bytes for c in self.counts],
            "cpu_s": time.process_time(),
            "keyframe_requests": sum(t.keyframe_requests for t in self.loop_tracks),
        }

    # join latency ----------------------------------------------------------------------------------------
    async def latency_join(self, base_url: str, tokens: list[str], pause: float) -> list[float]:
        """Seconds from ``RoomClient(...)`` + ``join()`` to the first decoded picture of the meeting's publisher."""
        from roomtape.agents import RoomClient

        results = []
        for token in tokens:
            started = time.monotonic()
            client = RoomClient(base_url, token)
            await client.join()
            async for remote in client.remote_tracks():
                if remote.kind == "video" and remote.track is not None:
                    frame = await asyncio.wait_for(remote.track.recv(), 10)
                    assert isinstance(frame, av.VideoFrame), type(frame)
                    results.append(time.monotonic() - started)
                    break
            await client.leave()
            await asyncio.sleep(pause)
        return results

    async def latency_publish(self, base_url: str, pairs: list[tuple[str, str]], pause: float) -> list[float]:
        """A subscriber waits in an empty meeting; seconds from the publisher's ``RoomClient`` + ``join()`` +
        ``publish()`` start to the subscriber's first decoded picture."""
        from roomtape.agents import RoomClient

        results = []
        for sub_token, pub_token in pairs:
            waiting = RoomClient(base_url, sub_token)
            await waiting.join()
            first: asyncio.Future[float] = asyncio.get_running_loop().create_future()

            async def first_picture(waiting: Any = waiting, first: asyncio.Future[float] = first) -> None:
                async for remote in waiting.remote_tracks():
                    if remote.kind == "video" and remote.track is not None:
                        frame = await remote.track.recv()
                        assert isinstance(frame, av.VideoFrame), type(frame)
                        first.set_result(time.monotonic())
                        return

            watcher = asyncio.ensure_future(first_picture())
            started = time.monotonic()
            publisher = RoomClient(base_url, pub_token)
            await publisher.join()
            await publisher.publish(video=self._loop_track())
            results.append(await asyncio.wait_for(first, 10) - started)
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
            await waiting.leave()
            await publisher.leave()
            await asyncio.sleep(pause)
        return results

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        for client in self.clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.leave(), 5)
        for pc in self.pcs:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pc.close(), 5)


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "median_s": round(statistics.median(ordered), 3),
        "p90_s": round(p90, 3),
        "min_s": round(ordered[0], 3),
        "max_s": round(ordered[-1], 3),
    }


# ------------------------------------------------------------------------------------------- the worker
def worker_main(conn: Connection, use_uvloop: bool) -> None:
    """Entry point of a worker process: run commands from ``conn`` until ``exit``."""
    if use_uvloop:
        import uvloop

        uvloop.run(_serve(conn))
    else:
        asyncio.run(_serve(conn))


async def _serve(conn: Connection) -> None:
    peers = Peers()
    loop = asyncio.get_running_loop()
    while True:
        name, args = await loop.run_in_executor(None, conn.recv)
        if name == "exit":
            await peers.close()
            conn.send(("ok", None))
            return
        try:
            method: Callable[..., Coroutine[Any, Any, Any]] = getattr(peers, name)
            conn.send(("ok", await method(*args)))
        except Exception:
            conn.send(("error", traceback.format_exc()))
