from dataclasses import dataclass
from typing import Literal

CodecName = Literal["opus", "vp8", "vp9"]
"""Codecs the passthrough writer can mux into WebM."""

VIDEO_CODECS: frozenset[str] = frozenset({"vp8", "vp9"})
"""Codec names that carry video (and so need a keyframe to start a file)."""


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One encoded media frame as it came off the wire, before any decoding.

    This is the recorder's own type, so that `roomtape.recording` does not depend on the
    media plane's tap: the tap converts whatever it receives into these.
    """

    data: bytes
    """The encoded payload (one whole frame: depacketized, reassembled)."""
    rtp_timestamp: int
    """The RTP timestamp, 32-bit, in units of `clock_rate`; it wraps around after 2**32."""
    clock_rate: int
    """The RTP clock rate: 90000 for video, 48000 for Opus."""
    keyframe: bool
    """Whether the frame can be decoded on its own (always true for audio)."""
    arrival: float
    """Wall-clock arrival time, seconds since the Unix epoch."""
    codec: CodecName
    """The codec of `data`."""
