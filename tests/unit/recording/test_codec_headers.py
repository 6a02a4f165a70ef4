import struct
from fractions import Fraction

import av
import numpy as np
import pytest

from roomtape.recording.codecs import (
    opus_head,
    opus_packet_samples,
    vp8_frame_size,
    vp8_is_keyframe,
    vp9_frame_size,
    vp9_is_keyframe,
)


def test_opus_head_layout_matches_rfc_7845() -> None:
    head = opus_head(channels=2, pre_skip=312)
    assert head == b"OpusHead" + bytes([1, 2]) + struct.pack("<H", 312) + struct.pack("<I", 48000) + b"\0\0" + b"\0"
    assert len(head) == 19


def test_opus_head_defaults_to_stereo_without_pre_skip() -> None:
    assert opus_head() == b"OpusHead\x01\x02\x00\x00\x80\xbb\x00\x00\x00\x00\x00"


def test_opus_head_rejects_channels_family_0_cannot_carry() -> None:
    with pytest.raises(ValueError):
        opus_head(channels=6)


@pytest.mark.parametrize(
    ("packet", "samples"),
    [
        (bytes([(31 << 3) | 0, 0]), 960),  # CELT FB 20 ms, one frame
        (bytes([(1 << 3) | 0]), 960),  # SILK NB 20 ms
        (bytes([(3 << 3) | 1, 0]), 2 * 2880),  # SILK 60 ms, two frames
        (bytes([(16 << 3) | 3, 4]), 4 * 120),  # CELT 2.5 ms, code 3 with 4 frames
        (bytes([(13 << 3) | 2]), 2 * 960),  # hybrid 20 ms, two frames
        (b"", 0),
        (bytes([(16 << 3) | 3]), 0),  # code 3 without its frame-count byte
    ],
)
def test_opus_packet_samples_reads_toc(packet: bytes, samples: int) -> None:
    assert opus_packet_samples(packet) == samples


def test_vp8_header_from_handmade_bytes() -> None:
    # frame tag (keyframe, version 0, show_frame) + start code + 1280|scale 1, 720|scale 2
    key = bytes([0x50, 0x42, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 1280 | 0x4000, 720 | 0x8000)
    assert vp8_is_keyframe(key)
    assert vp8_frame_size(key) == (1280, 720)
    inter = bytes([0x51]) + key[1:]
    assert not vp8_is_keyframe(inter)
    assert vp8_frame_size(inter) is None
    assert vp8_frame_size(key[:9]) is None
    assert vp8_frame_size(bytes([0x50, 0x42, 0x00]) + b"\x00\x00\x00" + key[6:]) is None
    assert not vp8_is_keyframe(b"")


def _encode(codec: str, width: int, height: int, count: int) -> list[bytes]:
    ctx = av.CodecContext.create(codec, "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, 30)
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[bytes] = []
    rng = np.random.default_rng(1)
    for i in range(count):
        img = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in ctx.encode(frame)]
    out += [bytes(p) for p in ctx.encode(None)]
    return out


def test_vp8_header_from_libvpx() -> None:
    frames = _encode("libvpx", 176, 144, 3)
    assert vp8_frame_size(frames[0]) == (176, 144)
    assert [vp8_is_keyframe(f) for f in frames] == [True, False, False]


def test_vp9_header_from_libvpx() -> None:
    frames = _encode("libvpx-vp9", 200, 112, 3)
    assert vp9_is_keyframe(frames[0])
    assert vp9_frame_size(frames[0]) == (200, 112)
    assert not any(vp9_is_keyframe(f) for f in frames[1:])
    assert vp9_frame_size(frames[1]) is None
    assert not vp9_is_keyframe(b"") and not vp9_is_keyframe(b"\x00\x00")
