"""Real encoded media for the recorder tests, made with PyAV's bundled libvpx and libopus."""

from fractions import Fraction

import av
import numpy as np

from roomtape.recording.frame import EncodedFrame

WIDTH, HEIGHT, FPS = 320, 240, 30
BITS = 8  # the frame counter, drawn as 8 black/white blocks of 40x120 px
TONE_HZ = 440.0


def counter_image(n: int) -> np.ndarray:
    img = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    block = WIDTH // BITS
    for bit in range(BITS):
        if n >> bit & 1:
            img[HEIGHT // 4 : HEIGHT * 3 // 4, bit * block : (bit + 1) * block] = 255
    return img


def read_counter(img: np.ndarray) -> int:
    block = WIDTH // BITS
    band = img[HEIGHT // 4 + 10 : HEIGHT * 3 // 4 - 10]
    return sum(1 << bit for bit in range(BITS) if band[:, bit * block + 5 : (bit + 1) * block - 5].mean() > 128)


def encode_vp8(count: int, gop: int = 60) -> list[tuple[bytes, bool]]:
    ctx = av.CodecContext.create("libvpx", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.gop_size = gop
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "b": "500k"}
    out: list[tuple[bytes, bool]] = []
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(counter_image(i), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    assert len(out) == count
    return out


def encode_opus(count: int) -> list[bytes]:
    """`count` 20 ms stereo Opus packets of a 440 Hz tone."""
    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate, ctx.layout, ctx.format = 48000, "stereo", "s16"
    ctx.time_base = Fraction(1, 48000)
    ctx.options = {"frame_duration": "20", "application": "audio"}
    t = np.arange(960 * (count + 2)) / 48000
    tone = (np.sin(2 * np.pi * TONE_HZ * t) * 12000).astype(np.int16)
    out: list[bytes] = []
    for i in range(count + 2):
        chunk = tone[i * 960 : (i + 1) * 960]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out[:count]


def video_frames(encoded: list[tuple[bytes, bool]], rtp0: int, t0: float, first: int = 0) -> list[EncodedFrame]:
    return [
        EncodedFrame(data, (rtp0 + i * 3000) % (1 << 32), 90000, key, t0 + i / FPS, "vp8")
        for i, (data, key) in enumerate(encoded)
        if i >= first
    ]


def audio_frames(encoded: list[bytes], rtp0: int, t0: float) -> list[EncodedFrame]:
    return [
        EncodedFrame(data, (rtp0 + i * 960) % (1 << 32), 48000, True, t0 + i * 0.02, "opus")
        for i, data in enumerate(encoded)
    ]


def dominant_hz(samples: np.ndarray, rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * rate / len(samples))
