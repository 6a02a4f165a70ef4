"""The picture size of an H.264 stream, read from its sequence parameter set (SPS) without decoding.

A preset's maximum video resolution is enforced on the encoded stream (see ``TrackFanout.limit_size``).
VP8 states the size in every keyframe header; H.264 states it in the SPS (ITU-T H.264 §7.3.2.1.1), which
encoders send in front of each IDR picture. aiortc's depayloader hands over access units in Annex B form,
whatever the RTP packetization was (single NAL unit, STAP-A or FU-A, RFC 6184 §5.6-5.8), so the SPS is found
by its start code.

Only the SPS fields up to the frame cropping are read: the size does not depend on what follows (VUI), so
an SPS whose VUI is odd or truncated still gives its size. Written here because no maintained library fits
the live path: PyAV's parser does not expose the SPS without decoding, and ``h26x-extractor`` (PyPI) is a
file-inspection tool that parses the whole VUI and raises on anything it cannot read there.

No I/O here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

__all__ = ["SequenceParameterSet", "SpsError", "parse_sps", "picture_size"]

_NAL_TYPE_SPS: Final = 7

# Profiles whose SPS carries chroma_format_idc, bit depths and scaling matrices (H.264 §7.3.2.1.1: High,
# High 10, High 4:2:2, High 4:4:4, CAVLC 4:4:4, and the SVC/MVC profiles of Annexes G and H).
_HIGH_PROFILES: Final = frozenset({100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135})

# (SubWidthC, SubHeightC) per chroma_format_idc (H.264 Table 6-1); 0 is monochrome.
_CHROMA_SUBSAMPLING: Final = {1: (2, 2), 2: (2, 1), 3: (1, 1)}

# An emulation prevention byte: 0x03 after two zero bytes, which the encoder inserted and the RBSP lacks
# (H.264 §7.4.1).
_EMULATION_PREVENTION: Final = re.compile(b"\x00\x00\x03")

# Exp-Golomb codes in an SPS stay below 2**32 (H.264 §7.4.2.1.1 bounds every ue(v) there); more leading
# zeros than this is a corrupt stream, not a large value.
_MAX_LEADING_ZEROS: Final = 32


class SpsError(ValueError):
    """An SPS that ends early or holds values outside what H.264 allows."""


@dataclass(frozen=True, slots=True)
class SequenceParameterSet:
    """The fields of an SPS that the picture size depends on (H.264 §7.4.2.1.1)."""

    profile_idc: int
    """66 Baseline, 77 Main, 100 High, ..."""
    level_idc: int
    """Level times ten (31 for level 3.1)."""
    chroma_format_idc: int
    """0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4; 1 when the profile does not say."""
    separate_colour_plane: bool
    """4:4:4 coded as three monochrome planes (cropping then counts in luma samples)."""
    pic_width_in_mbs: int
    """Width in 16-sample macroblocks."""
    pic_height_in_map_units: int
    """Height in map units: macroblocks for frame-only streams, macroblock pairs otherwise."""
    frame_mbs_only: bool
    """False for streams that may code fields (interlaced)."""
    crop: tuple[int, int, int, int]
    """frame_crop_{left,right,top,bottom}_offset, in crop units."""

    @property
    def coded_size(self) -> tuple[int, int]:
        """The decoded picture ``(width, height)`` before cropping: whole macroblocks."""
        fields = 1 if self.frame_mbs_only else 2
        return self.pic_width_in_mbs * 16, fields * self.pic_height_in_map_units * 16

    def _crop_units(self) -> tuple[int, int]:
        # CropUnitX and CropUnitY (H.264 equations 7-19 to 7-22).
        fields = 1 if self.frame_mbs_only else 2
        chroma_array_type = 0 if self.separate_colour_plane else self.chroma_format_idc
        if chroma_array_type == 0:
            return 1, fields
        sub_width, sub_height = _CHROMA_SUBSAMPLING[chroma_array_type]
        return sub_width, sub_height * fields

    def _cropped(self, most: tuple[int, int] | None) -> tuple[int, int]:
        unit_x, unit_y = self._crop_units()
        left, right, top, bottom = self.crop
        crop_x, crop_y = unit_x * (left + right), unit_y * (top + bottom)
        width, height = self.coded_size
        if crop_x >= width or crop_y >= height:
            # What FFmpeg (and so every browser decoding with it) does with such an SPS: it warns and
            # shows the whole coded picture.
            return width, height
        if most is not None:
            crop_x, crop_y = min(crop_x, most[0]), min(crop_y, most[1])
        return width - crop_x, height - crop_y

    @property
    def size(self) -> tuple[int, int]:
        """The displayed picture ``(width, height)`` after cropping (H.264 §7.4.2.1.1)."""
        return self._cropped(None)

    @property
    def bounded_size(self) -> tuple[int, int]:
        """:attr:`size` with the cropping counted only as far as it pads the picture to whole macroblocks.

        Encoders crop only the padding (1366x768 is coded as 1376x768 and cropped by 10 columns). A stream
        coded far larger and cropped down to a small window costs what its coded size costs, so a size
        limit is checked against this.
        """
        fields = 1 if self.frame_mbs_only else 2
        return self._cropped((15, 16 * fields - 1))


class _BitReader:
    """Reads bits and Exp-Golomb codes (H.264 §9.1) from an RBSP, most significant bit first."""

    def __init__(self, rbsp: bytes) -> None:
        self._value = int.from_bytes(rbsp, "big")
        self._left = len(rbsp) * 8

    def bits(self, count: int) -> int:
        if count > self._left:
            raise SpsError("the SPS ends early")
        self._left -= count
        return (self._value >> self._left) & ((1 << count) - 1)

    def flag(self) -> bool:
        return self.bits(1) == 1

    def ue(self) -> int:
        zeros = 0
        while self.bits(1) == 0:
            zeros += 1
            if zeros > _MAX_LEADING_ZEROS:
                raise SpsError("an Exp-Golomb code in the SPS is longer than 32 bits")
        return (1 << zeros) - 1 + self.bits(zeros)

    def se(self) -> int:
        code = self.ue()
        return (code + 1) // 2 if code % 2 else -(code // 2)


def _skip_scaling_list(reader: _BitReader, size: int) -> None:
    # H.264 §7.3.2.1.1.1: delta-coded entries until one delta makes the next scale 0 (repeat the last).
    last_scale = next_scale = 8
    for _ in range(size):
        if next_scale != 0:
            next_scale = (last_scale + reader.se()) % 256
        last_scale = last_scale if next_scale == 0 else next_scale


def parse_sps(nal: bytes) -> SequenceParameterSet:
    """Read the size-related fields of one SPS NAL unit.

    Args:
        nal: The NAL unit from its header byte on (no start code), emulation prevention bytes included.

    Returns:
        The parsed fields.

    Raises:
        SpsError: if ``nal`` is not an SPS, ends before the cropping fields, or holds out-of-range values.
    """
    if not nal or nal[0] & 0x1F != _NAL_TYPE_SPS:
        raise SpsError("not an SPS NAL unit (type 7)")
    reader = _BitReader(_EMULATION_PREVENTION.sub(b"\x00\x00", nal[1:]))
    profile_idc = reader.bits(8)
    reader.bits(8)  # constraint_set0..5 flags and two reserved bits
    level_idc = reader.bits(8)
    if reader.ue() > 31:
        raise SpsError("seq_parameter_set_id is above 31")
    chroma_format_idc, separate_colour_plane = 1, False
    if profile_idc in _HIGH_PROFILES:
        chroma_format_idc = reader.ue()
        if chroma_format_idc > 3:
            raise SpsError(f"chroma_format_idc {chroma_format_idc} is above 3")
        if chroma_format_idc == 3:
            separate_colour_plane = reader.flag()
        reader.ue()  # bit_depth_luma_minus8
        reader.ue()  # bit_depth_chroma_minus8
        reader.flag()  # qpprime_y_zero_transform_bypass_flag
        if reader.flag():  # seq_scaling_matrix_present_flag
            for i in range(8 if chroma_format_idc != 3 else 12):
                if reader.flag():  # seq_scaling_list_present_flag[i]: six 4x4 lists, then 8x8 ones
                    _skip_scaling_list(reader, 16 if i < 6 else 64)
    reader.ue()  # log2_max_frame_num_minus4
    pic_order_cnt_type = reader.ue()
    if pic_order_cnt_type == 0:
        reader.ue()  # log2_max_pic_order_cnt_lsb_minus4
    elif pic_order_cnt_type == 1:
        reader.flag()  # delta_pic_order_always_zero_flag
        reader.se()  # offset_for_non_ref_pic
        reader.se()  # offset_for_top_to_bottom_field
        cycle = reader.ue()
        if cycle > 255:
            raise SpsError(f"num_ref_frames_in_pic_order_cnt_cycle {cycle} is above 255")
        for _ in range(cycle):
            reader.se()  # offset_for_ref_frame[i]
    elif pic_order_cnt_type != 2:
        raise SpsError(f"pic_order_cnt_type {pic_order_cnt_type} is above 2")
    reader.ue()  # max_num_ref_frames
    reader.flag()  # gaps_in_frame_num_value_allowed_flag
    pic_width_in_mbs = reader.ue() + 1
    pic_height_in_map_units = reader.ue() + 1
    frame_mbs_only = reader.flag()
    if not frame_mbs_only:
        reader.flag()  # mb_adaptive_frame_field_flag
    reader.flag()  # direct_8x8_inference_flag
    crop = (0, 0, 0, 0)
    if reader.flag():  # frame_cropping_flag
        crop = (reader.ue(), reader.ue(), reader.ue(), reader.ue())
    return SequenceParameterSet(
        profile_idc=profile_idc,
        level_idc=level_idc,
        chroma_format_idc=chroma_format_idc,
        separate_colour_plane=separate_colour_plane,
        pic_width_in_mbs=pic_width_in_mbs,
        pic_height_in_map_units=pic_height_in_map_units,
        frame_mbs_only=frame_mbs_only,
        crop=crop,
    )


def picture_size(access_unit: bytes) -> tuple[int, int] | None:
    """The picture size an H.264 access unit announces in its SPS, if it carries one, for a size limit.

    This is :attr:`SequenceParameterSet.bounded_size`: the displayed size for what encoders send, more for
    an SPS that crops away more than the macroblock padding.
    An access unit with several SPS (different ``seq_parameter_set_id``) gets the smallest size that holds
    each of them, so a large SPS cannot hide behind a small one.

    Args:
        access_unit: One access unit in Annex B form (as aiortc's depayloader emits it).

    Returns:
        ``(width, height)``, or None when the access unit holds no SPS that can be read.
    """
    size: tuple[int, int] | None = None
    pos = access_unit.find(b"\x00\x00\x01")
    while pos != -1:
        start = pos + 3
        pos = access_unit.find(b"\x00\x00\x01", start)
        if start < len(access_unit) and access_unit[start] & 0x1F == _NAL_TYPE_SPS:
            # The SPS runs to the next start code; a trailing zero byte of that start code (or of
            # trailing_zero_8bits) falls after rbsp_trailing_bits and is not read.
            try:
                width, height = parse_sps(access_unit[start : pos if pos != -1 else None]).bounded_size
            except SpsError:
                continue
            size = (width, height) if size is None else (max(size[0], width), max(size[1], height))
    return size
