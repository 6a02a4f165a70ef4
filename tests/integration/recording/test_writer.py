from pathlib import Path

import av
import numpy as np
import pytest
from tests.integration.recording.recording_media import (
    FPS,
    HEIGHT,
    WIDTH,
    audio_frames,
    dominant_hz,
    encode_opus,
    encode_vp8,
    read_counter,
    video_frames,
)

from roomtape.recording.frame import EncodedFrame
from roomtape.recording.repair import needs_repair
from roomtape.recording.writer import TrackWriter

T0 = 1_700_000_000.0
NEAR_WRAP = (1 << 32) - 45_000  # the RTP clock wraps half a second into the file


@pytest.fixture(scope="module")
def vp8() -> list[tuple[bytes, bool]]:
    return encode_vp8(3 * FPS)


@pytest.fixture(scope="module")
def opus() -> list[bytes]:
    return encode_opus(150)


def test_vp8_file_decodes_to_the_frames_sent(tmp_path: Path, vp8: list[tuple[bytes, bool]]) -> None:
    path = tmp_path / "video.webm"
    with TrackWriter(path) as writer:
        for frame in video_frames(vp8, NEAR_WRAP, T0):
            assert writer.write(frame)
        stats = writer.close()
    assert stats.frames == 90 and stats.last_rtp is not None and stats.last_rtp > 1 << 32
    assert stats.duration_seconds == pytest.approx(3.0)
    assert not needs_repair(path)

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(3.0, abs=1 / FPS)
        assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
        first = next(p for p in container.demux(stream) if p.size)
        assert first.is_keyframe
    with av.open(str(path)) as container:
        decoded = list(container.decode(video=0))
    assert len(decoded) == 90
    assert [read_counter(f.to_ndarray(format="rgb24")) for f in decoded] == list(range(90))
    assert [round(f.time * FPS) for f in decoded] == list(range(90))


def test_vp8_file_starts_at_the_first_keyframe(tmp_path: Path, vp8: list[tuple[bytes, bool]]) -> None:
    path = tmp_path / "video.webm"
    requests: list[int] = []
    writer = TrackWriter(path, on_keyframe_needed=lambda: requests.append(1))
    for frame in video_frames(vp8, NEAR_WRAP, T0, first=10):  # joined mid-GOP
        writer.write(frame)
    stats = writer.close()
    assert stats.dropped_before_keyframe == 50 and stats.frames == 30  # the GOP is 60 frames
    assert requests  # the caller was asked for a PLI
    with av.open(str(path)) as container:
        decoded = [read_counter(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert decoded == list(range(60, 90))


def test_opus_file_decodes_to_the_tone(tmp_path: Path, opus: list[bytes]) -> None:
    path = tmp_path / "audio.webm"
    with TrackWriter(path) as writer:
        for frame in audio_frames(opus, NEAR_WRAP, T0):
            assert writer.write(frame)
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        extradata = stream.codec_context.extradata
        assert extradata is not None and extradata.startswith(b"OpusHead")
        assert extradata[9] == 2  # channels
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(3.0, abs=0.02)
        frames = list(container.decode(stream))
    assert len(frames) == 150
    samples = np.concatenate([f.to_ndarray()[0] for f in frames])
    assert len(samples) == 150 * 960
    assert dominant_hz(samples[4800:]) == pytest.approx(440, abs=2)


def test_vp9_file_decodes(tmp_path: Path) -> None:
    from fractions import Fraction

    from tests.integration.recording.recording_media import counter_image

    ctx = av.CodecContext.create("libvpx-vp9", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = WIDTH, HEIGHT, "yuv420p", Fraction(1, FPS)
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    encoded: list[tuple[bytes, bool]] = []
    for i in range(30):
        frame = av.VideoFrame.from_ndarray(counter_image(i), format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        encoded += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    encoded += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    path = tmp_path / "vp9.webm"
    with TrackWriter(path) as writer:
        for f in video_frames(encoded, NEAR_WRAP, T0):
            writer.write(EncodedFrame(f.data, f.rtp_timestamp, f.clock_rate, f.keyframe, f.arrival, "vp9"))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "vp9"
        assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
        decoded = [read_counter(f.to_ndarray(format="rgb24")) for f in container.decode(stream)]
    assert decoded == list(range(30))
