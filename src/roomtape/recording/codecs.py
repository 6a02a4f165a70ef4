import struct
from collections.abc import Sequence

OPUS_SAMPLE_RATE = 48000
"""Opus always runs at 48 kHz on the wire and in containers (RFC 7587 §4.1, RFC 7845 §4)."""

# Frame length in 48 kHz samples for each of the 32 TOC configurations (RFC 6716 §3.1, table 2):
# 0-11 SILK 10/20/40/60 ms, 12-15 hybrid 10/20 ms, 16-31 CELT 2.5/5/10/20 ms.
_OPUS_CONFIG_SAMPLES: tuple[int, ...] = (480, 960, 1920, 2880) * 3 + (480, 960) * 2 + (120, 240, 480, 960) * 4

_VP8_START_CODE = b"\x9d\x01\x2a"
_VP9_SYNC_CODE = 0x498342


def opus_head(channels: int = 2, pre_skip: int = 0, input_sample_rate: int = OPUS_SAMPLE_RATE) -> bytes:
    """Build the `OpusHead` identification header that WebM stores as CodecPrivate.

    Layout per RFC 7845 §5.1: magic "OpusHead", version 1, channel count, pre-skip (u16 LE),
    input sample rate (u32 LE), output gain (s16 LE, Q7.8 dB) and channel mapping family 0
    (mono or stereo, no mapping table).

    Args:
        channels: Output channel count, 1 or 2 (WebRTC negotiates opus/48000/2).
        pre_skip: Samples at 48 kHz to discard from the decoder output at the start of the stream.
        input_sample_rate: Informational sample rate of the original input.

    Returns:
        The 19-byte header.

    Raises:
        ValueError: If `channels` is not 1 or 2 (family 0 allows nothing else).
    """
    if channels not in (1, 2):
        raise ValueError(f"mapping family 0 carries 1 or 2 channels, not {channels}")
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_sample_rate, 0, 0)


def opus_packet_samples(data: bytes) -> int:
    """Count the 48 kHz samples an Opus packet decodes to, from its TOC byte (RFC 6716 §3.1).

    Args:
        data: One Opus packet.

    Returns:
        The number of samples per channel, or 0 for an empty or malformed packet.
    """
    if not data:
        return 0
    toc = data[0]
    code = toc & 3
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(data) > 1:
        count = data[1] & 0x3F
    else:
        return 0
    return _OPUS_CONFIG_SAMPLES[toc >> 3] * count


OPUS_SILENCE: bytes = bytes.fromhex("0808acb30ec6")
"""A 20 ms mono Opus packet that decodes to silence (within 1 LSB of 16 bits): what libopus writes for digital
silence at 6 kbit/s, a SILK narrowband frame (TOC config 1). It fills the slots of a multistream file where a
participant had no media. Not CELT's own silence frame (f8 ff fe): that sets the CELT band energies to their floor,
and the decoder then renders the first real packet after it ~28 dB too quiet (measured with FFmpeg's decoder and
libopus); a SILK frame leaves CELT's state as a fresh decoder's, so the packet after it decodes as it would first."""


def opus_multistream_head(streams: int, mapping: Sequence[int] | None = None) -> bytes:
    """Build an `OpusHead` for `streams` uncoupled mono streams, one per output channel (RFC 7845 §5.1.1.2).

    One stream needs no mapping table (family 0, mono); more use channel mapping family 1 with no coupled
    streams, so each channel is decoded on its own from its own stream.

    Args:
        streams: Channel (and stream) count, 1..8.
        mapping: Stream index per channel in the header's (Vorbis) channel order; identity by default.

    Returns:
        The header (19 bytes for one stream, 21 + `streams` otherwise).

    Raises:
        ValueError: If `streams` is outside 1..8 or `mapping` does not fit.
    """
    if not 1 <= streams <= 8:
        raise ValueError(f"mapping family 1 carries 1..8 channels, not {streams}")
    if streams == 1:
        return opus_head(1)
    table = list(range(streams)) if mapping is None else list(mapping)
    if sorted(table) != list(range(streams)):
        raise ValueError(f"mapping {table} is not a permutation of {streams} streams")
    header = b"OpusHead" + struct.pack("<BBHIhB", 1, streams, 0, OPUS_SAMPLE_RATE, 0, 1)
    return header + bytes([streams, 0, *table])


def _opus_length(size: int) -> bytes:
    # RFC 6716 §3.2.1: one byte below 252, else two bytes (first = 252 + size % 4, second = the rest / 4).
    if size < 252:
        return bytes([size])
    first = 252 + (size & 3)
    return bytes([first, (size - first) >> 2])


def _read_opus_length(data: bytes, pos: int) -> tuple[int, int]:
    first = data[pos]
    if first < 252:
        return first, pos + 1
    return first + 4 * data[pos + 1], pos + 2


def opus_self_delimited(data: bytes) -> bytes:
    """Rewrite an Opus packet in self-delimiting framing (RFC 6716 Appendix B).

    Every stream of a multistream packet but the last must be self-delimited: the size of the last
    frame, which the normal framing leaves implicit, is written out after the other sizes.

    Args:
        data: One Opus packet in normal framing.

    Returns:
        The same packet, self-delimited.

    Raises:
        ValueError: If the packet is empty or malformed.
    """
    try:
        toc = data[0]
        code = toc & 3
        if code == 0:
            return data[:1] + _opus_length(len(data) - 1) + data[1:]
        if code == 1:
            if (len(data) - 1) % 2:
                raise ValueError("code 1 Opus packet with frames of unequal size")
            return data[:1] + _opus_length((len(data) - 1) // 2) + data[1:]
        if code == 2:
            first, pos = _read_opus_length(data, 1)
            last = len(data) - pos - first
            if last < 0:
                raise ValueError("code 2 Opus packet shorter than its first frame")
            return data[:pos] + _opus_length(last) + data[pos:]
        count_byte = data[1]
        count, vbr, padded = count_byte & 0x3F, count_byte & 0x80, count_byte & 0x40
        pos, padding = 2, 0
        if padded:
            while True:
                value = data[pos]
                pos += 1
                padding += 254 if value == 255 else value
                if value != 255:
                    break
        if not count:
            raise ValueError("code 3 Opus packet with no frames")
        if vbr:
            sizes = 0
            for _ in range(count - 1):
                size, pos = _read_opus_length(data, pos)
                sizes += size
            last = len(data) - pos - padding - sizes
        else:
            last, rest = divmod(len(data) - pos - padding, count)
            if rest:
                raise ValueError("CBR code 3 Opus packet with frames of unequal size")
        if last < 0:
            raise ValueError("code 3 Opus packet shorter than its frames")
        return data[:pos] + _opus_length(last) + data[pos:]
    except IndexError:
        raise ValueError("truncated Opus packet") from None


def vp8_is_keyframe(data: bytes) -> bool:
    """Tell whether a VP8 frame is a keyframe (RFC 6386 §9.1: bit 0 of the frame tag is 0).

    Args:
        data: One VP8 frame.

    Returns:
        True for a keyframe.
    """
    return bool(data) and data[0] & 1 == 0


def vp8_frame_size(data: bytes) -> tuple[int, int] | None:
    """Read width and height from a VP8 keyframe header (RFC 6386 §9.1).

    A keyframe has a 3-byte frame tag, the start code 9d 01 2a, then width and height as
    little-endian 16-bit values whose top two bits are a scaling mode.

    Args:
        data: One VP8 frame.

    Returns:
        `(width, height)`, or None if `data` is not a well-formed keyframe.
    """
    if len(data) < 10 or data[0] & 1 or data[3:6] != _VP8_START_CODE:
        return None
    width, height = struct.unpack_from("<HH", data, 6)
    return width & 0x3FFF, height & 0x3FFF


class _BitReader:
    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def read(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            byte = self._pos >> 3
            if byte >= len(self._data):
                raise EOFError
            value = (value << 1) | ((self._data[byte] >> (7 - (self._pos & 7))) & 1)
            self._pos += 1
        return value


def _vp9_header(data: bytes) -> tuple[bool, tuple[int, int] | None]:
    # The uncompressed header of the VP9 bitstream spec (v0.6, §6.2); a superframe starts with
    # its first frame, so reading from byte 0 is right for superframes too.
    bits = _BitReader(data)
    try:
        if bits.read(2) != 2:  # frame_marker
            return False, None
        profile = bits.read(1) | (bits.read(1) << 1)
        if profile == 3:
            bits.read(1)  # reserved_zero
        if bits.read(1):  # show_existing_frame: repeats a decoded frame, never a keyframe
            return False, None
        if bits.read(1):  # frame_type: 0 is KEY_FRAME
            return False, None
        bits.read(2)  # show_frame, error_resilient_mode
        if bits.read(24) != _VP9_SYNC_CODE:
            return False, None
        if profile >= 2:
            bits.read(1)  # ten_or_twelve_bit
        color_space = bits.read(3)
        if color_space != 7:  # not CS_RGB
            bits.read(1)  # color_range
            if profile in (1, 3):
                bits.read(3)  # subsampling_x, subsampling_y, reserved_zero
        elif profile in (1, 3):
            bits.read(1)  # reserved_zero
        width = bits.read(16) + 1
        height = bits.read(16) + 1
    except EOFError:
        return False, None
    return True, (width, height)


def vp9_is_keyframe(data: bytes) -> bool:
    """Tell whether a VP9 frame is a keyframe (VP9 bitstream spec §6.2, frame_type 0).

    Args:
        data: One VP9 frame or superframe.

    Returns:
        True for a keyframe.
    """
    return _vp9_header(data)[0]


def vp9_frame_size(data: bytes) -> tuple[int, int] | None:
    """Read width and height from a VP9 keyframe's uncompressed header.

    Args:
        data: One VP9 frame or superframe.

    Returns:
        `(width, height)`, or None if `data` is not a well-formed keyframe.
    """
    return _vp9_header(data)[1]


def frame_size(codec: str, data: bytes) -> tuple[int, int] | None:
    """Read the picture size from a keyframe of `codec`.

    Args:
        codec: "vp8" or "vp9"; any other codec has no size.
        data: One encoded frame.

    Returns:
        `(width, height)`, or None if `data` is not a keyframe of a video codec.
    """
    if codec == "vp8":
        return vp8_frame_size(data)
    if codec == "vp9":
        return vp9_frame_size(data)
    return None
