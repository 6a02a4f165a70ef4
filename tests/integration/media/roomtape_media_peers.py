"""Real aiortc client peers for media tests: a publisher of recognisable content and a subscriber."""

from __future__ import annotations

import asyncio
import fractions
import time
from dataclasses import dataclass, field

import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame, VideoFrame

WIDTH, HEIGHT = 320, 240
BITS = 16  # 4x4 grid of 80x60 blocks, one bit each, most significant first
BLOCK_W, BLOCK_H = WIDTH // 4, HEIGHT // 4
SAMPLE_RATE = 48000
PTIME = 0.02


def no_ice_servers() -> RTCConfiguration:
    return RTCConfiguration(iceServers=[])


def counter_picture(counter: int) -> np.ndarray:
    """A yuv420p picture whose 16 big blocks spell ``counter`` in binary (white = 1)."""
    luma = np.full((HEIGHT, WIDTH), 16, dtype=np.uint8)
    for bit in range(BITS):
        if counter >> (BITS - 1 - bit) & 1:
            row, col = divmod(bit, 4)
            luma[row * BLOCK_H : (row + 1) * BLOCK_H, col * BLOCK_W : (col + 1) * BLOCK_W] = 235
    chroma = np.full((HEIGHT // 2, WIDTH), 128, dtype=np.uint8)  # U then V, each H/2 x W/2
    return np.concatenate([luma, chroma])


def read_counter(frame: VideoFrame) -> int:
    """Read the counter back from a decoded picture (block centres, robust to coding noise)."""
    luma = frame.to_ndarray(format="yuv420p")[: frame.height]
    sy, sx = frame.height / HEIGHT, frame.width / WIDTH
    value = 0
    for bit in range(BITS):
        row, col = divmod(bit, 4)
        y0, x0 = int((row * BLOCK_H + BLOCK_H // 4) * sy), int((col * BLOCK_W + BLOCK_W // 4) * sx)
        y1, x1 = int((row * BLOCK_H + 3 * BLOCK_H // 4) * sy), int((col * BLOCK_W + 3 * BLOCK_W // 4) * sx)
        value = value << 1 | int(luma[y0:y1, x0:x1].mean() > 128)
    return value


class CounterVideoTrack(VideoStreamTrack):
    """30 fps video whose pictures carry a frame counter."""

    def __init__(self) -> None:
        super().__init__()
        self.counter = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(counter_picture(self.counter), format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        self.counter += 1
        return frame


class ToneAudioTrack(MediaStreamTrack):
    """A sine tone at ``frequency`` Hz, 48 kHz mono, 20 ms frames in real time."""

    kind = "audio"

    def __init__(self, frequency: float) -> None:
        super().__init__()
        self.frequency = frequency
        self._samples = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(PTIME * SAMPLE_RATE)
        if self._start is None:
            self._start = time.time()
        else:
            await asyncio.sleep(self._start + self._samples / SAMPLE_RATE - time.time())
        t = (np.arange(n) + self._samples) / SAMPLE_RATE
        pcm = (0.5 * 32767 * np.sin(2 * np.pi * self.frequency * t)).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, SAMPLE_RATE)
        self._samples += n
        return frame


def dominant_frequency(samples: np.ndarray, rate: int = SAMPLE_RATE) -> float:
    """Frequency of the highest FFT peak, in Hz (Hann window, ~0.2 Hz bins on 5 s)."""
    windowed = samples.astype(np.float64) * np.hanning(len(samples))
    spectrum = np.abs(np.fft.rfft(windowed))
    spectrum[0] = 0
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum))])


async def publisher_offer(pc: RTCPeerConnection, *tracks: MediaStreamTrack) -> str:
    for track in tracks:
        pc.addTransceiver(track, direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


async def accept_answer(pc: RTCPeerConnection, answer: str) -> None:
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))


@dataclass
class Subscriber:
    """A receive-only client peer that decodes normally and records what it got."""

    pc: RTCPeerConnection = field(default_factory=lambda: RTCPeerConnection(no_ice_servers()))
    counters: list[int] = field(default_factory=list)
    counter_times: list[float] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    connected_at: float | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def offer(self, video: int = 1, audio: int = 1) -> str:
        for _ in range(video):
            self.pc.addTransceiver("video", direction="recvonly")
        for _ in range(audio):
            self.pc.addTransceiver("audio", direction="recvonly")

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            self.tasks.append(asyncio.ensure_future(self._read(track)))

        @self.pc.on("connectionstatechange")
        def on_state() -> None:
            if self.pc.connectionState == "connected" and self.connected_at is None:
                self.connected_at = time.monotonic()

        await self.pc.setLocalDescription(await self.pc.createOffer())
        return self.pc.localDescription.sdp

    async def _read(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if isinstance(frame, VideoFrame):
                    self.counters.append(read_counter(frame))
                    self.counter_times.append(time.monotonic())
                elif isinstance(frame, AudioFrame):
                    pcm = frame.to_ndarray()
                    # aiortc decodes Opus to interleaved stereo s16: keep the left channel.
                    self.audio.append(pcm.reshape(-1)[:: len(frame.layout.channels)])
        except MediaStreamError:
            pass

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
