from __future__ import annotations

import fractions

import pytest
from tests.unit.media.roomtape_vp8_samples import vp8_frames

from roomtape.media.frame import (
    AUDIO_TIME_BASE,
    VIDEO_TIME_BASE,
    EncodedFrame,
    h264_is_keyframe,
    parse_vp8_keyframe,
)


@pytest.mark.parametrize(("width", "height"), [(320, 240), (640, 360), (176, 144)])
def test_vp8_keyframe_size_from_libvpx_output(width: int, height: int) -> None:
    key, inter, *_ = vp8_frames(width, height)
    assert parse_vp8_keyframe(key) == (True, width, height)
    assert parse_vp8_keyframe(inter) == (False, None, None)


def test_vp8_size_ignores_scaling_bits() -> None:
    header = (
        bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A])
        + (1280 | 0x4000).to_bytes(2, "little")
        + (720 | 0xC000).to_bytes(2, "little")
    )
    assert parse_vp8_keyframe(header) == (True, 1280, 720)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x10\x02\x00\x9d\x01",  # keyframe bit, but truncated before the size
        b"\x10\x02\x00\x00\x00\x00\x40\x01\xf0\x00",  # keyframe bit, no start code
    ],
)
def test_vp8_broken_keyframes_are_not_keyframes(data: bytes) -> None:
    assert parse_vp8_keyframe(data) == (False, None, None)


def test_h264_keyframe_detection() -> None:
    sps, pps, idr, non_idr = b"\x67\x42", b"\x68\xce", b"\x65\x88", b"\x41\x9a"
    start = b"\x00\x00\x00\x01"
    assert h264_is_keyframe(start + sps + start + pps + start + idr)
    assert h264_is_keyframe(start + idr)
    assert not h264_is_keyframe(start + non_idr)
    assert not h264_is_keyframe(b"")


def test_to_packet_is_a_fresh_packet_with_timing() -> None:
    frame = EncodedFrame(
        data=b"\x00abc",
        pts=180000,
        time_base=VIDEO_TIME_BASE,
        rtp_timestamp=12345,
        keyframe=True,
        mime_type="video/vp8",
        received_at=0.0,
    )
    first, second = frame.to_packet(), frame.to_packet()
    assert first is not second
    assert bytes(first) == b"\x00abc" == bytes(frame)
    assert (first.pts, first.dts, first.time_base, first.is_keyframe) == (180000, 180000, VIDEO_TIME_BASE, True)
    first.pts = 0
    assert second.pts == 180000
    assert AUDIO_TIME_BASE == fractions.Fraction(1, 48000)
