"""Track files for the composer tests: real VP8/Opus from PyAV's encoders, written by the real recorder; and
live publishers (a flash and a beep on a shared clock) for the sync tests."""

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from roomtape.recording.frame import EncodedFrame
from roomtape.recording.manifest import TrackKind
from roomtape.recording.segmenter import TrackRecorder

T0 = 1_700_000_000.0  # wall clock of the meeting's start, seconds since the epoch
T0_MS = int(T0 * 1000)
SESSION = "sess-1"
RATE = 48000
PACKET = 960  # 20 ms Opus


def solid(rgb: tuple[int, int, int], width: int, height: int) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = rgb
    return img


def encode_vp8(images: Sequence[np.ndarray], fps: int, gop: int = 30) -> list[tuple[bytes, bool]]:
    height, width = images[0].shape[:2]
    ctx = av.CodecContext.create("libvpx", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.gop_size = gop
    ctx.thread_count = 1  # libvpx's threads spin-wait: far slower on a busy 2-core machine
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "b": "400k"}
    out: list[tuple[bytes, bool]] = []
    for i, img in enumerate(images):
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    assert len(out) == len(images)
    return out


def encode_opus(samples: np.ndarray) -> list[bytes]:
    """Mono float samples at 48 kHz (length a multiple of 960) -> 20 ms stereo Opus packets."""
    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate, ctx.layout, ctx.format = RATE, "stereo", "s16"
    ctx.time_base = Fraction(1, RATE)
    ctx.bit_rate = 64000
    ctx.options = {"frame_duration": "20", "application": "audio"}
    count = len(samples) // PACKET
    pcm = np.concatenate([samples, np.zeros(PACKET * 2)])
    pcm = (np.clip(pcm, -1, 1) * 32767).astype(np.int16)
    out: list[bytes] = []
    for i in range(count + 2):
        chunk = pcm[i * PACKET : (i + 1) * PACKET]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = RATE, i * PACKET
        out += [bytes(p) for p in ctx.encode(frame)]
    # libopus delays its output by its look-ahead (312 samples at 48 kHz); the track writer
    # writes pre-skip 0, so trim the delay here by shifting the input instead.
    return out[:count]


def tone(freq: float, seconds: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(round(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * freq * t)


def record_video(
    base: Path,
    participant: str,
    images: Callable[[int], np.ndarray],
    segments: Sequence[tuple[float, float]],
    fps: int = 30,
    kind: TrackKind = "video",
    offset: float = 0.0,
    max_segment_seconds: float = 0.0,
) -> None:
    """Record a video track with one segment per (start s, end s) after T0 + offset; each is a fresh encoder."""
    recorder = TrackRecorder(base, SESSION, participant, kind, max_segment_seconds=max_segment_seconds)
    for start, end in segments:
        first = round(start * fps)
        indices = range(first, round(end * fps))
        encoded = encode_vp8([images(i) for i in indices], fps)
        recorder.on_unmute()
        for i, (data, key) in zip(indices, encoded, strict=True):
            recorder.write(EncodedFrame(data, (i * 3000) % (1 << 32), 90000, key, T0 + offset + i / fps, "vp8"))
        recorder.on_mute()
    recorder.close()


def record_audio(
    base: Path,
    participant: str,
    samples: np.ndarray,
    segments: Sequence[tuple[float, float]],
    kind: TrackKind = "audio",
    offset: float = 0.0,
    max_segment_seconds: float = 0.0,
) -> None:
    """Record mono samples (index 0 = T0 + offset) as Opus, sending only inside the (start s, end s) segments."""
    recorder = TrackRecorder(base, SESSION, participant, kind, max_segment_seconds=max_segment_seconds)
    for start, end in segments:
        first, last = round(start * RATE / PACKET), round(end * RATE / PACKET)
        # Encode from a little earlier so the encoder's look-ahead is primed, then drop that part.
        lead = min(first, 5)
        chunk = samples[(first - lead) * PACKET : last * PACKET]
        chunk = np.concatenate([chunk[312:], np.zeros(312)])  # cancel libopus's 312-sample delay
        packets = encode_opus(chunk)[lead:]
        recorder.on_unmute()
        for j, data in enumerate(packets):
            i = first + j
            recorder.write(
                EncodedFrame(data, (i * PACKET) % (1 << 32), RATE, True, T0 + offset + i * PACKET / RATE, "opus")
            )
        recorder.on_mute()
    recorder.close()


def decode_video(path: Path) -> list[tuple[float, np.ndarray]]:
    """(time, rgb24 picture) of every frame."""
    with av.open(str(path)) as container:
        return [(float(f.time or 0.0), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]


def decode_audio(path: Path) -> tuple[int, np.ndarray]:
    """(sample rate, (channels, n) float samples), the first sample at time 0 of the file."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp")
        chunks = []
        first_time = None
        for frame in container.decode(stream):
            if first_time is None:
                first_time = float(frame.time or 0.0)
            chunks += [f.to_ndarray() for f in resampler.resample(frame)]
        rate = stream.codec_context.sample_rate
    samples = np.concatenate(chunks, axis=1)
    lead = round((first_time or 0.0) * rate)
    if lead > 0:
        samples = np.concatenate([np.zeros((samples.shape[0], lead), samples.dtype), samples], axis=1)
    elif lead < 0:
        samples = samples[:, -lead:]
    return rate, samples


def band(samples: np.ndarray, rate: int, at: float, freq: float, seconds: float = 0.1) -> float:
    """Amplitude of `freq` in a window of `seconds` starting at `at` (about the sine's peak amplitude)."""
    window = samples[round(at * rate) : round((at + seconds) * rate)]
    spectrum = np.abs(np.fft.rfft(window * np.hanning(len(window)))) * 4 / len(window)
    freqs = np.fft.rfftfreq(len(window), 1 / rate)
    near = np.abs(freqs - freq) <= 15
    return float(spectrum[near].max())


# -- live publishers for sync tests: a flash and a beep at the same instant, on a shared clock ---------------

FLASH_SECONDS = 0.1  # the flash (white picture) and the beep last this long
METRONOME_FPS = 30


class Metronome:
    """Beats every ``period`` seconds of wall clock, from ``epoch + offset`` on (shared by a publisher's tracks).

    Frames are produced on a grid anchored at ``epoch`` (video every 1/fps s, audio every 20 ms), so a beat
    falls exactly on a video frame's and an audio sample's capture time: the flash and the beep start at the
    same instant.
    """

    def __init__(self, epoch: float, offset: float = 0.0, period: float = 1.0) -> None:
        self.epoch = epoch
        self.offset = offset
        self.period = period

    def phase(self, t: np.ndarray | float) -> np.ndarray | float:
        """Seconds since the latest beat at wall-clock ``t`` (negative before the first)."""
        since = np.asarray(t) - self.epoch - self.offset
        return np.where(since < 0, -1.0, np.mod(since, self.period))

    def beat_times(self, start: float, end: float) -> list[float]:
        """Wall-clock times of the beats within [start, end)."""
        first = math.ceil((start - self.epoch - self.offset) / self.period)
        out = []
        k = max(first, 0)
        while (t := self.epoch + self.offset + k * self.period) < end:
            out.append(t)
            k += 1
        return out


async def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


class FlashVideoTrack(MediaStreamTrack):
    """Black pictures, white for ``FLASH_SECONDS`` from every beat; frame k is captured at ``epoch + k / fps``."""

    kind = "video"

    def __init__(self, metronome: Metronome, width: int = 320, height: int = 240) -> None:
        super().__init__()
        self.metronome = metronome
        self._k: int | None = None
        y = np.full((height, width), 16, np.uint8)
        chroma = np.full((height // 2, width), 128, np.uint8)
        self._black = np.concatenate([y, chroma])
        self._white = np.concatenate([np.full((height, width), 235, np.uint8), chroma])

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        epoch = self.metronome.epoch
        if self._k is None:
            self._k = max(0, math.ceil((time.time() - epoch) * METRONOME_FPS))
        t = epoch + self._k / METRONOME_FPS
        await _sleep_until(t)
        flash = 0 <= float(self.metronome.phase(t)) < FLASH_SECONDS - 1e-6
        frame = VideoFrame.from_ndarray(self._white if flash else self._black, format="yuv420p")
        frame.pts = self._k * (90000 // METRONOME_FPS)
        frame.time_base = Fraction(1, 90000)
        self._k += 1
        return frame


class BeepAudioTrack(MediaStreamTrack):
    """Silence with a ``freq`` Hz beep for ``FLASH_SECONDS`` from every beat; 20 ms frames at ``epoch + n * 0.02``."""

    kind = "audio"

    def __init__(self, metronome: Metronome, freq: float) -> None:
        super().__init__()
        self.metronome = metronome
        self.freq = freq
        self._n: int | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        epoch = self.metronome.epoch
        if self._n is None:
            self._n = max(0, math.ceil((time.time() - epoch) / (PACKET / RATE)))
        t0 = epoch + self._n * PACKET / RATE
        await _sleep_until(t0)
        t = t0 + np.arange(PACKET) / RATE
        on = np.asarray(self.metronome.phase(t)) >= 0
        on &= np.asarray(self.metronome.phase(t)) < FLASH_SECONDS
        pcm = np.where(on, 0.5 * np.sin(2 * np.pi * self.freq * (t - epoch)), 0.0)
        frame = av.AudioFrame.from_ndarray((pcm * 32767).astype(np.int16).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._n * PACKET
        frame.time_base = Fraction(1, RATE)
        self._n += 1
        return frame


def onsets(active: np.ndarray, times: np.ndarray, quiet: float = 0.3) -> list[float]:
    """Times where ``active`` turns on after having been off for at least ``quiet`` seconds."""
    out: list[float] = []
    last_on = -math.inf
    for on, t in zip(active, times, strict=True):
        if on:
            if t - last_on >= quiet:
                out.append(float(t))
            last_on = float(t)
    return out


def beep_onsets(samples: np.ndarray, rate: int, freq: float, threshold: float = 0.08) -> list[float]:
    """Onsets (s) of beeps at ``freq``: the envelope of the signal mixed down to ``freq`` (I/Q, 4 ms mean: zero
    response to tones a multiple of 250 Hz away, so beeps at 1000 and 1500 Hz are told apart), 2 ms hops."""
    t = np.arange(len(samples)) / rate
    i = samples * np.cos(2 * np.pi * freq * t)
    q = samples * np.sin(2 * np.pi * freq * t)
    width = max(1, round(0.004 * rate))
    kernel = np.ones(width) / width
    envelope = 2 * np.hypot(np.convolve(i, kernel, "same"), np.convolve(q, kernel, "same"))
    hop = max(1, round(0.002 * rate))
    env, times = envelope[::hop], t[::hop]
    return onsets(env > threshold, times)
