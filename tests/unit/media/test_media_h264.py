"""The H.264 SPS reader against what libx264 (through PyAV) writes, and against hand-built SPS for the
branches libx264 never takes (scaling matrices in the SPS, POC type 1, emulation prevention before the size,
cropping beyond the macroblock padding)."""

from __future__ import annotations

import fractions
from typing import Any

import av
import pytest

from roomtape.media.frame import h264_is_keyframe
from roomtape.media.h264 import SpsError, parse_sps, picture_size

START = b"\x00\x00\x00\x01"


def x264_access_unit(width: int, height: int, pix_fmt: str = "yuv420p", **options: Any) -> bytes:
    """The first access unit libx264 writes for one black picture (Annex B: SPS, PPS, SEI, IDR)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, pix_fmt
    codec.time_base = fractions.Fraction(1, 30)
    profile = options.pop("profile", None)
    codec.options = {k.replace("_", "-"): str(v) for k, v in options.items()}
    if profile is not None:
        codec.profile = profile
    frame = av.VideoFrame(width, height, pix_fmt)
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame.pts = 0
    packets = [*codec.encode(frame), *codec.encode(None)]
    return bytes(packets[0])


def nal_units(access_unit: bytes) -> list[bytes]:
    return [nal.rstrip(b"\x00") for nal in access_unit.split(b"\x00\x00\x01") if nal.strip(b"\x00")]


def sps_of(access_unit: bytes) -> bytes:
    return next(nal for nal in nal_units(access_unit) if nal[0] & 0x1F == 7)


@pytest.mark.parametrize(
    ("width", "height", "pix_fmt", "options", "expected"),
    [
        # (profile_idc, chroma_format_idc, frame_mbs_only, crop): the branches each case takes.
        (1366, 768, "yuv420p", {}, (100, 1, True, (0, 5, 0, 0))),
        (640, 360, "yuv420p", {}, (100, 1, True, (0, 0, 0, 4))),
        (1920, 1080, "yuv420p", {}, (100, 1, True, (0, 0, 0, 4))),
        (320, 240, "yuv420p", {}, (100, 1, True, (0, 0, 0, 0))),
        # aiortc's own H.264 encoder settings.
        (640, 360, "yuv420p", {"profile": "Baseline", "tune": "zerolatency"}, (66, 1, True, (0, 0, 0, 4))),
        (1366, 768, "yuv420p10le", {}, (110, 1, True, (0, 5, 0, 0))),
        (1366, 768, "yuv422p", {}, (122, 2, True, (0, 5, 0, 0))),
        # 4:4:4 and monochrome crop in single samples, so odd sizes are possible.
        (1365, 767, "yuv444p", {}, (244, 3, True, (0, 11, 0, 1))),
        (1365, 767, "gray", {}, (100, 0, True, (0, 11, 0, 1))),
        # Field coding: height in macroblock pairs, vertical crop in units of 4 rows.
        (1920, 1080, "yuv420p", {"x264_params": "interlaced=1"}, (100, 1, False, (0, 0, 0, 2))),
    ],
)
def test_size_of_libx264_streams(
    width: int, height: int, pix_fmt: str, options: dict[str, str], expected: tuple[int, int, bool, tuple[int, ...]]
) -> None:
    access_unit = x264_access_unit(width, height, pix_fmt, **options)
    sps = parse_sps(sps_of(access_unit))
    assert (sps.profile_idc, sps.chroma_format_idc, sps.frame_mbs_only, sps.crop) == expected
    assert sps.size == (width, height) == sps.bounded_size
    assert picture_size(access_unit) == (width, height)
    # The decoder agrees (the one check here that decodes: tests may, the live path does not).
    decoder = av.CodecContext.create("h264", "r")
    decoded = [f for p in (av.Packet(access_unit), None) for f in decoder.decode(p)]
    assert [(f.width, f.height) for f in decoded] == [(width, height)]


def test_inter_frames_and_bad_input_have_no_size() -> None:
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.options = {"tune": "zerolatency"}
    packets = []
    for pts in range(3):
        frame = av.VideoFrame(320, 240, "yuv420p")
        for plane in frame.planes:
            plane.update(bytes([pts * 40]) * plane.buffer_size)
        frame.pts = pts
        packets += [bytes(p) for p in codec.encode(frame)]
    assert picture_size(packets[0]) == (320, 240)
    assert not h264_is_keyframe(packets[1]) and picture_size(packets[1]) is None
    sps = sps_of(packets[0])
    assert picture_size(b"") is None and picture_size(START) is None
    assert picture_size(START + sps[:6]) is None  # truncated: unreadable, so no size
    with pytest.raises(SpsError, match="ends early"):
        parse_sps(sps[:6])
    with pytest.raises(SpsError, match="not an SPS"):
        parse_sps(b"\x68\xce")


# ---------------------------------------------------------------------------------------- hand-built SPS
class BitWriter:
    """Writes fields and Exp-Golomb codes, then the NAL unit with emulation prevention (H.264 §7.4.1)."""

    def __init__(self) -> None:
        self.bits = ""

    def u(self, count: int, value: int) -> BitWriter:
        self.bits += format(value, f"0{count}b") if count else ""
        return self

    def ue(self, value: int) -> BitWriter:
        code = format(value + 1, "b")
        self.bits += "0" * (len(code) - 1) + code
        return self

    def se(self, value: int) -> BitWriter:
        return self.ue(2 * value - 1 if value > 0 else -2 * value)

    def nal(self, header: int = 0x67) -> bytes:
        bits = self.bits + "1"  # rbsp_stop_one_bit, then zeros to the byte boundary
        bits += "0" * (-len(bits) % 8)
        rbsp = int(bits, 2).to_bytes(len(bits) // 8, "big")
        out, zeros = bytearray([header]), 0
        for byte in rbsp:
            if zeros >= 2 and byte <= 3:
                out.append(3)
                zeros = 0
            out.append(byte)
            zeros = zeros + 1 if byte == 0 else 0
        return bytes(out)


def sps_with(
    *,
    profile_idc: int = 66,
    high: list[int] | None = None,
    scaling_lists: list[list[int] | None] | None = None,
    poc_type_1: tuple[int, int, list[int]] | None = None,
    mbs: tuple[int, int] = (20, 15),
    crop: tuple[int, int, int, int] | None = None,
) -> bytes:
    """An SPS with the given fields; ``high`` is [chroma_format_idc, (separate_colour_plane)]."""
    w = BitWriter().u(8, profile_idc).u(8, 0).u(8, 31).ue(0)
    if high is not None:
        w.ue(high[0])
        if high[0] == 3:
            w.u(1, high[1])
        w.ue(0).ue(0).u(1, 0)
        w.u(1, scaling_lists is not None)
        for entries in scaling_lists or []:
            w.u(1, entries is not None)
            last = 8
            for entry in entries or []:
                w.se((entry - last + 128) % 256 - 128)
                last = entry
    w.ue(0)  # log2_max_frame_num_minus4
    if poc_type_1 is None:
        w.ue(2)
    else:
        w.ue(1).u(1, 0).se(poc_type_1[0]).se(poc_type_1[1]).ue(len(poc_type_1[2]))
        for offset in poc_type_1[2]:
            w.se(offset)
    w.ue(1).u(1, 0).ue(mbs[0] - 1).ue(mbs[1] - 1).u(1, 1).u(1, 1)
    w.u(1, crop is not None)
    for offset in crop or ():
        w.ue(offset)
    return w.u(1, 0).nal()  # no VUI


def test_scaling_matrices_in_the_sps_are_skipped() -> None:
    # Explicit 4x4 lists, a list cut short by a zero delta ("repeat the last"), a "use default" list and
    # two explicit 8x8 lists: everything before the size must be consumed exactly.
    four = [6 + 3 * i for i in range(16)]
    cut = [16, 20, 0]  # the 0 ends the list: the rest repeats 20
    eight = [10 + i for i in range(64)]
    lists: list[list[int] | None] = [four, cut, None, [0], four, None, eight, eight]
    nal = sps_with(profile_idc=100, high=[1], scaling_lists=lists, mbs=(86, 48), crop=(0, 5, 0, 0))
    assert parse_sps(nal).size == (1366, 768)
    # 4:4:4 has twelve lists.
    nal = sps_with(profile_idc=244, high=[3, 0], scaling_lists=[eight if i >= 6 else four for i in range(12)])
    sps = parse_sps(nal)
    assert (sps.chroma_format_idc, sps.size) == (3, (320, 240))


def test_emulation_prevention_bytes_before_the_size_are_removed() -> None:
    # POC type 1 with large offsets puts runs of 16+ zero bits into the RBSP before the size fields, so
    # the encoder must have inserted 0x03 bytes there.
    nal = sps_with(poc_type_1=(40000, -70000, [65536, 1]), mbs=(120, 68), crop=(0, 0, 0, 4))
    assert b"\x00\x00\x03" in nal[: len(nal) // 2]
    assert parse_sps(nal).size == (1920, 1080)


def test_separate_colour_planes_crop_in_luma_samples() -> None:
    sps = parse_sps(sps_with(profile_idc=244, high=[3, 1], mbs=(86, 48), crop=(0, 11, 0, 1)))
    assert sps.separate_colour_plane and sps.size == (1365, 767)


def test_cropping_beyond_the_padding_does_not_hide_a_large_picture() -> None:
    # Coded 1920x1088 and "cropped" to a 320x240 window: the limit sees what was coded, less the padding.
    cropped = parse_sps(sps_with(mbs=(120, 68), crop=(0, 800, 0, 424)))
    assert cropped.size == (320, 240)
    assert cropped.bounded_size == (1905, 1073)
    assert picture_size(START + sps_with(mbs=(120, 68), crop=(0, 800, 0, 424))) == (1905, 1073)
    # Crop values that leave nothing: decoders ignore them and show the coded picture.
    assert parse_sps(sps_with(mbs=(20, 15), crop=(200, 0, 0, 0))).size == (320, 240)


def test_several_sps_in_one_access_unit_count_together() -> None:
    small, large = sps_with(mbs=(20, 15)), sps_with(mbs=(15, 40))
    assert picture_size(START + small + START + large + START + b"\x65\x88") == (320, 640)


@pytest.mark.parametrize(
    ("nal", "message"),
    [
        (BitWriter().u(8, 100).u(8, 0).u(8, 31).ue(0).ue(4).nal(), "chroma_format_idc 4"),
        (BitWriter().u(8, 66).u(8, 0).u(8, 31).ue(32).nal(), "seq_parameter_set_id"),
        (BitWriter().u(8, 66).u(8, 0).u(8, 31).ue(0).ue(0).ue(3).nal(), "pic_order_cnt_type 3"),
        (BitWriter().u(8, 66).u(8, 0).u(8, 31).u(40, 0).nal(), "longer than 32 bits"),
    ],
    ids=["chroma_format_idc", "sps_id", "poc_type", "exp_golomb_length"],
)
def test_values_outside_the_standard_are_refused(nal: bytes, message: str) -> None:
    with pytest.raises(SpsError, match=message):
        parse_sps(nal)
