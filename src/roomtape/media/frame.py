"""Encoded media frames as they leave the tap, and the bitstream facts read from them.

An :class:`EncodedFrame` is one complete frame re-assembled by aiortc's jitter buffer (one VP8 picture,
one H.264 access unit, one Opus packet). It is immutable and shared by every consumer of a track (each
subscriber and the recorder), so consumers that need an ``av.Packet`` make their own with
:meth:`EncodedFrame.to_packet`: PyAV's muxer rescales a packet's timestamps in place, which would corrupt
a packet shared with the forwarding path.
"""

from __future__ import annotations

import fractions
from dataclasses import dataclass
from typing import Any, Final

import av

__all__ = [
    "AUDIO_TIME_BASE",
    "VIDEO_TIME_BASE",
    "EncodedFrame",
    "h264_is_keyframe",
    "parse_vp8_keyframe",
]

VIDEO_TIME_BASE: Final = fractions.Fraction(1, 90000)
"""RTP clock of every WebRTC video codec (RFC 7741 §4.1 for VP8, RFC 6184 §5.1 for H.264)."""

AUDIO_TIME_BASE: Final = fractions.Fraction(1, 48000)
"""RTP clock of Opus, whatever the real sampling rate (RFC 7587 §4.1)."""

# VP8 keyframe start code, bytes 3-5 of a keyframe (RFC 6386 §9.1).
_VP8_START_CODE: Final = b"\x9d\x01\x2a"


def parse_vp8_keyframe(data: bytes) -> tuple[bool, int | None, int | None]:
    """Read the frame type and, for a keyframe, the picture size of a VP8 frame.

    The first byte's lowest bit is the inverse keyframe flag (RFC 6386 §9.1: ``0`` means keyframe). A
    keyframe then carries a 3-byte start code and two little-endian 16-bit fields whose low 14 bits are the
    width and height (the top 2 bits are a scaling hint, ignored here).

    Args:
        data: One complete VP8 frame, without the RTP payload descriptor.

    Returns:
        ``(keyframe, width, height)``; width and height are ``None`` for inter frames and for keyframes
        whose header is truncated or lacks the start code (which are then reported as not keyframes, since
        no decoder could start from them).
    """
    if not data or data[0] & 1:
        return False, None, None
    if len(data) < 10 or data[3:6] != _VP8_START_CODE:
        return False, None, None
    width = (data[6] | (data[7] << 8)) & 0x3FFF
    height = (data[8] | (data[9] << 8)) & 0x3FFF
    return True, width, height


def h264_is_keyframe(data: bytes) -> bool:
    """Tell whether an H.264 access unit in Annex B form starts a decodable sequence.

    aiortc's depayloader emits Annex B (``00 00 00 01`` start codes). An access unit counts as a keyframe
    when it holds an IDR slice (NAL type 5) or a sequence parameter set (NAL type 7), which encoders send
    right before an IDR.

    Args:
        data: One access unit in Annex B form.

    Returns:
        True if the access unit contains an IDR slice or an SPS.
    """
    pos = data.find(b"\x00\x00\x01")
    while pos != -1 and pos + 3 < len(data):
        nal_type = data[pos + 3] & 0x1F
        if nal_type in (5, 7):
            return True
        pos = data.find(b"\x00\x00\x01", pos + 3)
    return False


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One complete encoded frame from a remote track.

    Timestamps come in two forms because aiortc re-bases them (see ``roomtape.media.tap``):
    ``pts`` is what aiortc hands out, ``rtp_timestamp`` is what was on the wire and what RTCP sender reports
    refer to.
    """

    data: bytes
    """The frame's bitstream (VP8 frame, H.264 Annex B access unit or Opus packet)."""
    pts: int
    """Presentation time in ``time_base`` units, 0 at the receiver's first frame, unwrapped past 2**32."""
    time_base: fractions.Fraction
    """1/90000 for video, 1/48000 for Opus (the RTP clock rate of the negotiated codec)."""
    rtp_timestamp: int
    """The RTP timestamp as sent by the publisher (32 bits, wraps)."""
    keyframe: bool
    """True when a decoder can start at this frame; always True for audio."""
    mime_type: str
    """Negotiated codec in lower case, e.g. ``"video/vp8"`` or ``"audio/opus"``."""
    received_at: float
    """Wall-clock time (``time.time()``) at which the frame left the jitter buffer."""
    width: int | None = None
    """Picture width read from a VP8 keyframe header or an H.264 SPS (``roomtape.media.h264``), else None."""
    height: int | None = None
    """Picture height, like :attr:`width`."""

    def __bytes__(self) -> bytes:
        return self.data

    def to_packet(self) -> av.Packet[Any]:
        """Make a fresh ``av.Packet`` for this frame, owned by the caller.

        WebRTC VP8 and Opus have no B-frames, so ``dts`` equals ``pts``.

        Returns:
            A packet with ``pts``, ``dts``, ``time_base`` and the keyframe flag set.
        """
        packet = av.Packet(self.data)
        packet.pts = self.pts
        packet.dts = self.pts
        packet.time_base = self.time_base
        packet.is_keyframe = self.keyframe
        return packet
