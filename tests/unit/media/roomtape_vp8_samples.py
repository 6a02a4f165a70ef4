"""Real VP8 frames made with PyAV's libvpx, for bitstream and tap tests."""

from __future__ import annotations

import fractions
from functools import cache

import av
import numpy as np


@cache
def vp8_frames(width: int = 320, height: int = 240, count: int = 3) -> tuple[bytes, ...]:
    """``count`` encoded VP8 frames: a keyframe, then inter frames."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
    out: list[bytes] = []
    for i in range(count):
        pic = np.full((height * 3 // 2, width), 16 + 40 * i, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(pic, format="yuv420p")
        frame.pts = i
        out.extend(bytes(p) for p in codec.encode(frame))
    out.extend(bytes(p) for p in codec.encode(None))
    return tuple(out[:count])
