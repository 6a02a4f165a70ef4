import struct
from fractions import Fraction

import av
import numpy as np
import pytest

from roomtape.recording.codecs import (
    OPUS_SILENCE,
    opus_head,
    opus_multistream_head,
    opus_packet_samples,
    opus_self_delimited,
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


def test_multistream_head_has_one_uncoupled_stream_per_channel() -> None:
    assert opus_multistream_head(1) == opus_head(1)
    head = opus_multistream_head(3, (0, 2, 1))
    assert head[:19] == b"OpusHead" + bytes([1, 3]) + b"\0\0" + struct.pack("<I", 48000) + b"\0\0" + b"\x01"
    assert head[19:] == bytes([3, 0, 0, 2, 1])  # 3 streams, none coupled, the mapping table
    with pytest.raises(ValueError):
        opus_multistream_head(9)
    with pytest.raises(ValueError):
        opus_multistream_head(3, (0, 0, 1))


FRAME_A, FRAME_B = bytes(range(7)), bytes(i % 256 for i in range(300))


@pytest.mark.parametrize(
    ("packet", "expected"),
    [
        # code 0: the one frame's size is written after the TOC (300 = 252 + 0 + 4 * 12)
        (bytes([0xF8]) + FRAME_B, bytes([0xF8, 252, 12]) + FRAME_B),
        (bytes([0xF8]) + FRAME_A, bytes([0xF8, 7]) + FRAME_A),
        # code 1: two frames of equal size, the size written once
        (bytes([0xF9]) + FRAME_A + FRAME_A, bytes([0xF9, 7]) + FRAME_A + FRAME_A),
        # code 2: first size already there, the second one added
        (bytes([0xFA, 7]) + FRAME_A + FRAME_B, bytes([0xFA, 7, 252, 12]) + FRAME_A + FRAME_B),
        # code 3 CBR, 2 frames, 1 byte of padding: the frame size goes after the padding length
        (bytes([0xFB, 0x42, 1]) + FRAME_A + FRAME_A + b"\0", bytes([0xFB, 0x42, 1, 7]) + FRAME_A + FRAME_A + b"\0"),
        # code 3 VBR, 2 frames: the last frame's size after the first one's
        (bytes([0xFB, 0x82, 7]) + FRAME_A + FRAME_B, bytes([0xFB, 0x82, 7, 252, 12]) + FRAME_A + FRAME_B),
    ],
)
def test_self_delimited_framing_follows_rfc_6716_appendix_b(packet: bytes, expected: bytes) -> None:
    assert opus_self_delimited(packet) == expected


@pytest.mark.parametrize("packet", [b"", bytes([0xFA, 200, 1]), bytes([0xF9, 1, 2, 3]), bytes([0xFB, 0x03, 1, 2])])
def test_self_delimited_framing_rejects_malformed_packets(packet: bytes) -> None:
    with pytest.raises(ValueError):
        opus_self_delimited(packet)


def test_silence_packet_decodes_to_silence() -> None:
    ctx = av.CodecContext.create("opus", "r")
    ctx.extradata = opus_head(1)
    samples = np.concatenate([f.to_ndarray().ravel() for _ in range(10) for f in ctx.decode(av.Packet(OPUS_SILENCE))])
    assert opus_packet_samples(OPUS_SILENCE) == 960
    assert samples.size >= 9000  # FFmpeg's SILK path holds back ~24 samples of resampler delay
    assert np.abs(samples).max() < 1e-4


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
