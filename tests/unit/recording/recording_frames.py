import struct

from roomtape.recording.frame import EncodedFrame

VP8_KEY = bytes([0x50, 0x42, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 320, 240) + b"\x00" * 40
VP8_DELTA = bytes([0x51, 0x42, 0x00]) + b"\x00" * 40
OPUS_20MS = bytes([(31 << 3) | 0]) + b"\x55" * 60


def video(i: int, *, key: bool = False, rtp0: int = 0, t0: float = 1_700_000_000.0) -> EncodedFrame:
    """Frame i of a 30 fps VP8 track: RTP 3000 ticks and 1/30 s apart."""
    return EncodedFrame(
        data=VP8_KEY if key else VP8_DELTA,
        rtp_timestamp=(rtp0 + i * 3000) % (1 << 32),
        clock_rate=90000,
        keyframe=key,
        arrival=t0 + i / 30,
        codec="vp8",
    )


def audio(i: int, *, rtp0: int = 0, t0: float = 1_700_000_000.0, data: bytes = OPUS_20MS) -> EncodedFrame:
    """Frame i of a 20 ms Opus track."""
    return EncodedFrame(
        data=data,
        rtp_timestamp=(rtp0 + i * 960) % (1 << 32),
        clock_rate=48000,
        keyframe=True,
        arrival=t0 + i * 0.02,
        codec="opus",
    )
