"""The composer on real track files: VP8/Opus from PyAV's encoders, written by the real recorder."""

import itertools
import json
import threading
from pathlib import Path

import av
import numpy as np
import pytest
from tests.integration.recording.compose_media import (
    RATE,
    T0_MS,
    band,
    decode_audio,
    decode_video,
    record_audio,
    record_video,
    solid,
    tone,
)

from roomtape.recording.composer import (
    CHANNEL_MAP_TAG,
    ComposeCancelled,
    ComposeOptions,
    ComposeProgress,
    ExportOptions,
    compose,
)
from roomtape.recording.frame import EncodedFrame
from roomtape.recording.segmenter import TrackRecorder

W, H = 160, 120  # publishers' picture
OUT_W, OUT_H = 320, 240  # composite picture
RED, BLUE = (255, 0, 0), (0, 0, 255)


def span(start: float, end: float) -> tuple[int, int]:
    return T0_MS + round(start * 1000), T0_MS + round(end * 1000)


def color_at(img: np.ndarray, y: int, x: int) -> tuple[int, int, int]:
    r, g, b = img[y - 4 : y + 4, x - 4 : x + 4].reshape(-1, 3).mean(axis=0)
    return round(r), round(g), round(b)


def is_color(rgb: tuple[int, int, int], want: tuple[int, int, int]) -> bool:
    return all(abs(a - b) < 40 for a, b in zip(rgb, want, strict=True))


def picture(frames: list[tuple[float, np.ndarray]], at: float) -> np.ndarray:
    return min(frames, key=lambda f: abs(f[0] - at))[1]


@pytest.fixture(scope="module")
def meeting(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """alice (red, 440 Hz) from 0 to 6 s; bob (blue, 1000 Hz) joins at 2 s and mutes his mic from 4 to 5 s."""
    base = tmp_path_factory.mktemp("meeting")
    record_video(base, "alice", lambda i: solid(RED, W, H), [(0, 6)])
    record_audio(base, "alice", tone(440, 6), [(0, 6)])
    record_video(base, "bob", lambda i: solid(BLUE, W, H), [(2, 6)])
    record_audio(base, "bob", tone(1000, 6), [(2, 4), (5, 6)])
    return base


def test_grid_places_each_participant_while_they_have_media(meeting: Path, tmp_path: Path) -> None:
    reports: list[ComposeProgress] = []
    options = ComposeOptions(width=OUT_W, height=OUT_H)
    result = compose(meeting, [span(0, 6)], options, tmp_path / "grid.mp4", progress=reports.append)

    assert result.duration_seconds == pytest.approx(6.0)
    assert result.participants == ("alice", "bob")
    assert [(s.kind, s.codec) for s in result.streams] == [("video", "h264"), ("audio", "aac")]
    assert result.size_bytes == (tmp_path / "grid.mp4").stat().st_size
    assert reports[-1].fraction == 1.0
    assert [r.fraction for r in reports] == sorted(r.fraction for r in reports)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left

    with av.open(str(result.path)) as container:
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(6.0, abs=0.1)
        assert container.streams.video[0].codec_context.width == OUT_W
    frames = decode_video(result.path)
    assert len(frames) == 180  # constant 30 fps
    assert [round(t * 30) for t, _ in frames] == list(range(180))

    alone = picture(frames, 1.0)  # before bob joins: alice fills the picture
    assert is_color(color_at(alone, 120, 160), RED)
    for at in (2.5, 4.5, 5.5):  # both: alice left, bob right
        img = picture(frames, at)
        assert is_color(color_at(img, 120, 80), RED), at
        assert is_color(color_at(img, 120, 240), BLUE), at
    assert not is_color(color_at(picture(frames, 1.9), 120, 240), BLUE)

    rate, audio = decode_audio(result.path)
    assert audio.shape[1] / rate == pytest.approx(6.0, abs=0.1)
    left = audio[0]
    assert band(left, rate, 1.0, 440) > 0.1 and band(left, rate, 1.0, 1000) < 0.01
    assert band(left, rate, 3.0, 440) > 0.1 and band(left, rate, 3.0, 1000) > 0.1
    assert band(left, rate, 4.4, 1000) < 0.01  # bob muted
    assert band(left, rate, 5.5, 1000) > 0.1
    assert np.abs(audio).max() <= 1.0


def test_active_speaker_follows_the_louder_participant(tmp_path: Path) -> None:
    base = tmp_path / "tracks"
    loud_then_quiet = np.concatenate([tone(440, 3, 0.5), tone(440, 3, 0.01)])
    quiet_then_loud = np.concatenate([tone(1000, 3, 0.01), tone(1000, 3, 0.5)])
    record_video(base, "alice", lambda i: solid(RED, W, H), [(0, 6)])
    record_audio(base, "alice", loud_then_quiet, [(0, 6)])
    record_video(base, "bob", lambda i: solid(BLUE, W, H), [(0, 6)])
    record_audio(base, "bob", quiet_then_loud, [(0, 6)])

    options = ComposeOptions(layout="active_speaker", width=OUT_W, height=OUT_H, format="webm")
    result = compose(base, [span(0, 6)], options, tmp_path / "speaker.webm")

    frames = decode_video(result.path)
    main, strip = (90, 160), (210, 160)  # centre of the big tile, centre of the strip
    for at in (1.0, 2.5):
        assert is_color(color_at(picture(frames, at), *main), RED), at
        assert is_color(color_at(picture(frames, at), *strip), BLUE), at
    for at in (4.5, 5.8):
        assert is_color(color_at(picture(frames, at), *main), BLUE), at
        assert is_color(color_at(picture(frames, at), *strip), RED), at
    # hold/hysteresis: one change only
    mains = [is_color(color_at(img, *main), RED) for _, img in frames]
    assert sum(a != b for a, b in itertools.pairwise(mains)) == 1


def test_paused_span_is_cut_out(tmp_path: Path) -> None:
    base = tmp_path / "tracks"
    green, magenta, yellow = (0, 255, 0), (255, 0, 255), (255, 255, 0)

    def image(i: int) -> np.ndarray:
        return solid(green if i < 90 else magenta if i < 150 else yellow, W, H)

    record_video(base, "alice", image, [(0, 8)])
    record_audio(base, "alice", np.concatenate([tone(440, 3), tone(2000, 2), tone(700, 3)]), [(0, 8)])

    options = ComposeOptions(width=OUT_W, height=OUT_H)
    result = compose(base, [span(0, 3), span(5, 8)], options, tmp_path / "paused.mp4")

    assert result.duration_seconds == pytest.approx(6.0)
    frames = decode_video(result.path)
    assert len(frames) == 180
    colors = [color_at(img, 120, 160) for _, img in frames]
    assert not any(is_color(c, magenta) for c in colors)
    assert all(is_color(c, green) for c in colors[:89]) and all(is_color(c, yellow) for c in colors[91:])
    rate, audio = decode_audio(result.path)
    assert audio.shape[1] / rate == pytest.approx(6.0, abs=0.1)
    mono = audio[0]
    assert band(mono, rate, 1.0, 440) > 0.1 and band(mono, rate, 4.0, 700) > 0.1
    assert max(band(mono, rate, t, 2000) for t in np.arange(0, 5.9, 0.1)) < 0.02


def flash_image(i: int) -> np.ndarray:
    return solid((255, 255, 255) if i % 30 < 3 else (0, 0, 0), W, H)


def beeps(seconds: float) -> np.ndarray:
    out = np.zeros(round(seconds * RATE))
    beep = tone(1000, 0.1, 0.5)
    for k in range(int(seconds)):
        out[k * RATE : k * RATE + len(beep)] = beep
    return out


def onsets(levels: np.ndarray, times: np.ndarray, threshold: float) -> list[float]:
    above = np.concatenate([[False], levels > threshold])
    return [float(times[i]) for i in range(len(levels)) if above[i + 1] and not above[i]]


@pytest.mark.parametrize(("fmt", "suffix"), [("mp4", "mp4"), ("webm", "webm")])
def test_flash_and_beep_stay_within_one_frame(tmp_path: Path, fmt: str, suffix: str) -> None:
    """Two publishers flash and beep every second; dave's clock starts 0.37 s later (off the frame grid)."""
    base = tmp_path / "tracks"
    record_video(base, "carol", flash_image, [(0, 5)])
    record_audio(base, "carol", beeps(5), [(0, 5)])
    record_video(base, "dave", flash_image, [(0, 4)], offset=0.37)
    record_audio(base, "dave", beeps(4), [(0, 4)], offset=0.37)

    options = ComposeOptions(width=OUT_W, height=OUT_H, format=fmt, channels="per_speaker")  # type: ignore[arg-type]
    result = compose(base, [span(0, 5)], options, tmp_path / f"sync.{suffix}")
    assert result.channel_map == (("carol",), ("dave",))

    frames = decode_video(result.path)
    times = np.array([t for t, _ in frames])
    rate, audio = decode_audio(result.path)
    envelope_times = np.arange(0, audio.shape[1] - 48, 48) / rate  # 1 ms steps
    for channel, x in enumerate((80, 240)):  # carol's tile, dave's tile
        luma = np.array([img[120 - 20 : 120 + 20, x - 20 : x + 20].mean() for _, img in frames])
        flashes = [t for t in onsets(luma, times, 128) if t > 0.3]  # before dave joins carol fills the picture
        envelope = np.array([np.abs(audio[channel, i : i + 48]).max() for i in range(0, audio.shape[1] - 48, 48)])
        beeps_at = [t for t in onsets(envelope, envelope_times, 0.1) if t > 0.3]
        assert len(flashes) >= 3 and len(flashes) == len(beeps_at), (flashes, beeps_at)
        errors = [abs(f - b) for f, b in zip(flashes, beeps_at, strict=True)]
        assert max(errors) <= 1 / 30 + 0.001, errors
        expected = 0.0 if channel == 0 else 0.37
        assert all(abs(b - round(b - expected) - expected) <= 0.02 for b in beeps_at), beeps_at


FORMATS = [
    ("mp4", None, "out.mp4", [("video", "h264"), ("audio", "aac")]),
    ("webm", "vp8", "out.webm", [("video", "vp8"), ("audio", "opus")]),
    ("webm", "vp9", "out.webm", [("video", "vp9"), ("audio", "opus")]),
    ("ogg", None, "out.ogg", [("audio", "opus")]),
    ("mp3", None, "out.mp3", [("audio", "mp3")]),
    ("aac", None, "out.aac", [("audio", "aac")]),
    ("aac", None, "out.m4a", [("audio", "aac")]),
]


@pytest.mark.parametrize(("fmt", "codec", "name", "streams"), FORMATS)
def test_formats_decode_with_their_codecs(
    meeting: Path, tmp_path: Path, fmt: str, codec: str | None, name: str, streams: list[tuple[str, str]]
) -> None:
    options = ComposeOptions(width=OUT_W, height=OUT_H, format=fmt, video_codec=codec)  # type: ignore[arg-type]
    result = compose(meeting, [span(2, 4)], options, tmp_path / name)
    assert [(s.kind, s.codec) for s in result.streams] == streams
    with av.open(str(result.path)) as container:
        found = [(s.type, s.codec_context.name) for s in container.streams]
        assert [(k, c.replace("libvpx-vp9", "vp9").replace("mp3float", "mp3")) for k, c in found] == streams
    rate, audio = decode_audio(result.path)
    assert audio.shape[1] / rate == pytest.approx(2.0, abs=0.1)
    assert band(audio[0], rate, 1.0, 440) > 0.1 and band(audio[0], rate, 1.0, 1000) > 0.1
    if streams[0][0] == "video":
        assert len(decode_video(result.path)) == 60


@pytest.mark.parametrize(
    ("channels", "expected"),
    [
        ("mono", [{440, 1000}]),
        ("stereo", [{440, 1000}, {440, 1000}]),
        ("per_speaker", [{440}, {1000}]),
        ("agent_stereo", [{440}, {1000}]),
    ],
)
def test_channel_layouts_put_each_voice_where_asked(
    meeting: Path, tmp_path: Path, channels: str, expected: list[set[int]]
) -> None:
    options = ComposeOptions(format="ogg", channels=channels, agent_participant_id="bob")  # type: ignore[arg-type]
    result = compose(meeting, [span(0, 4)], options, tmp_path / "voices.ogg")
    rate, audio = decode_audio(result.path)
    assert audio.shape[0] == len(expected) == result.streams[0].channels
    for channel, voices in enumerate(expected):
        for freq in (440, 1000):
            level = band(audio[channel], rate, 3.0, freq)
            assert (level > 0.1) == (freq in voices), (channel, freq, level)
    with av.open(str(result.path)) as container:
        tags = {**container.metadata, **container.streams.audio[0].metadata}
    assert json.loads(tags[CHANNEL_MAP_TAG]) == [list(c) for c in result.channel_map]
    if channels == "agent_stereo":
        assert result.channel_map == (("alice",), ("bob",))


def test_export_file_is_written_beside_the_composite(meeting: Path, tmp_path: Path) -> None:
    options = ComposeOptions(width=OUT_W, height=OUT_H, export=ExportOptions(tmp_path / "audio.mp3", "mp3"))
    result = compose(meeting, [span(0, 3)], options, tmp_path / "meeting.mp4")
    assert result.export is not None and result.export.path.exists()
    assert [(s.kind, s.codec) for s in result.export.streams] == [("audio", "mp3")]
    rate, audio = decode_audio(result.export.path)
    assert audio.shape[1] / rate == pytest.approx(3.0, abs=0.1)
    assert band(audio[0], rate, 2.5, 1000) > 0.1


def test_cancel_leaves_no_file(meeting: Path, tmp_path: Path) -> None:
    cancel = threading.Event()

    def progress(report: ComposeProgress) -> None:
        cancel.set()

    out = tmp_path / "cancelled.mp4"
    options = ComposeOptions(width=OUT_W, height=OUT_H, export=ExportOptions(tmp_path / "a.mp3", "mp3"))
    with pytest.raises(ComposeCancelled):
        compose(meeting, [span(0, 6)], options, out, progress=progress, cancel=cancel)
    assert list(tmp_path.iterdir()) == []


def mapping_family(path: Path) -> int:
    """The OpusHead's channel mapping family: 1 for copied packets (one mono stream per channel), 0 if encoded."""
    with av.open(str(path)) as container:
        head = bytes(container.streams.audio[0].codec_context.extradata or b"")
    return head[18]


def test_ogg_copies_each_speakers_packets_into_their_channel(tmp_path: Path) -> None:
    """carol beeps from 0 s, dave (his clock 0.37 s later, off the 20 ms grid) mutes from 2 to 3 s of his time,
    erin holds a 700 Hz tone from 0.5 s; the spans cut out 1.5..2.5 s. Each voice lands on its own channel, copied."""
    base = tmp_path / "tracks"
    record_audio(base, "carol", beeps(5), [(0, 5)])
    record_audio(base, "dave", beeps(5), [(0, 2), (3, 4.5)], offset=0.37)
    record_audio(base, "erin", tone(700, 4.5), [(0, 4.5)], offset=0.5)
    options = ComposeOptions(format="ogg", channels="per_speaker")
    result = compose(base, [span(0, 1.5), span(2.5, 5)], options, tmp_path / "voices.ogg")

    assert result.channel_map == (("carol",), ("dave",), ("erin",))
    assert [(s.kind, s.codec, s.channels, s.sample_rate) for s in result.streams] == [("audio", "opus", 3, 48000)]
    assert mapping_family(result.path) == 1
    rate, audio = decode_audio(result.path)
    # FFmpeg's decoder drops ~24 samples per SILK-coded (silent) stream at the start (its SILK resampler's delay)
    assert audio.shape[0] == 3 and abs(audio.shape[1] - 4 * rate) <= 100
    envelope_times = np.arange(0, audio.shape[1] - 48, 48) / rate  # 1 ms steps
    # wall-clock beeps: carol at 0, 1, 2, 3, 4; dave at 0.37, 1.37, 3.37, 4.37 (2.37 is muted); the output skips
    # 1.5..2.5 s of wall clock. Copied packets sit on the 20 ms grid: at most 10 ms off, +1 ms of envelope step,
    # +5 ms (and rounding) where a stream starts: a fresh decoder fades its first CELT frame in (the decoding path
    # shows the same).
    for channel, expected in ((0, [0.0, 1.0, 2.0, 3.0]), (1, [0.37, 1.37, 2.37, 3.37])):
        envelope = np.array([np.abs(audio[channel, i : i + 48]).max() for i in range(0, audio.shape[1] - 48, 48)])
        beeps_at = onsets(envelope, envelope_times, 0.1)
        assert len(beeps_at) == len(expected), beeps_at
        assert all(abs(b - e) <= 0.017 for b, e in zip(beeps_at, expected, strict=True)), beeps_at
    assert np.abs(audio[1, round(1.6 * rate) : round(2.3 * rate)]).max() < 0.01  # dave muted: silent packets
    assert np.abs(audio[1, : round(0.3 * rate)]).max() < 0.01  # before dave's first packet
    for at in (1.0, 2.0, 3.5):
        assert band(audio[2], rate, at, 700) > 0.2
        assert band(audio[0], rate, at, 700) < 0.02 and band(audio[1], rate, at, 700) < 0.02

    # erin's channel is the last stream of every packet: her recorded packets, byte for byte
    with av.open(str(next((base / "sess-1" / "erin" / "audio").glob("*.webm")))) as container:
        recorded = {bytes(p) for p in container.demux(audio=0) if p.size}
    with av.open(str(result.path)) as container:
        written = [bytes(p) for p in container.demux(audio=0) if p.size]
    assert len(written) == 200
    assert sum(any(w.endswith(r) for r in recorded) for w in written[50:70]) == 20
    with av.open(str(result.path)) as container:
        tags = {**container.metadata, **container.streams.audio[0].metadata}
    assert json.loads(tags[CHANNEL_MAP_TAG]) == [["carol"], ["dave"], ["erin"]]


def test_ogg_decodes_and_mixes_when_packets_are_not_20_ms(tmp_path: Path) -> None:
    """A track with 60 ms packets cannot go on the 20 ms grid: the composer decodes and re-encodes instead."""
    base = tmp_path / "tracks"
    record_audio(base, "alice", tone(440, 4), [(0, 4)])
    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate, ctx.layout, ctx.format = RATE, "mono", "s16"
    ctx.options = {"frame_duration": "60"}
    pcm = (tone(1000, 4) * 32767).astype(np.int16)
    packets = []
    for i in range(0, len(pcm), 2880):
        frame = av.AudioFrame.from_ndarray(pcm[np.newaxis, i : i + 2880], format="s16", layout="mono")
        frame.sample_rate, frame.pts = RATE, i
        packets += [bytes(p) for p in ctx.encode(frame)]
    recorder = TrackRecorder(base, "sess-1", "bob", "audio")
    for k, data in enumerate(packets):
        recorder.write(EncodedFrame(data, k * 2880, RATE, True, T0_MS / 1000 + k * 0.06, "opus"))
    recorder.close()

    options = ComposeOptions(format="ogg", channels="agent_stereo", agent_participant_id="bob")
    result = compose(base, [span(0, 4)], options, tmp_path / "agent.ogg")
    assert mapping_family(result.path) == 0  # encoded stereo, not copied
    rate, audio = decode_audio(result.path)
    assert audio.shape[0] == 2 and audio.shape[1] / rate == pytest.approx(4.0, abs=0.05)
    assert band(audio[0], rate, 2.0, 440) > 0.1 and band(audio[0], rate, 2.0, 1000) < 0.02
    assert band(audio[1], rate, 2.0, 1000) > 0.1 and band(audio[1], rate, 2.0, 440) < 0.02


def test_a_track_split_by_segment_max_seconds_composes_like_one_segment(tmp_path: Path) -> None:
    """Pieces cut every 1.5 s (audio at any packet, video at a keyframe) give the composite of the uncut track:
    the same pictures and the same samples, so no dent at the splits (one Opus decoder across the pieces)."""

    def counter(i: int) -> np.ndarray:  # a bar that moves each frame: a repeated or lost frame shows
        img = solid((20, 20, 20), W, H)
        img[:, (i * 4) % (W - 8) : (i * 4) % (W - 8) + 8] = 255
        return img

    outputs = {}
    for name, max_seconds in (("whole", 0.0), ("pieces", 1.5)):
        base = tmp_path / name
        record_video(base, "alice", counter, [(0, 5)], max_segment_seconds=max_seconds)
        record_audio(base, "alice", tone(440, 5), [(0, 5)], max_segment_seconds=max_seconds)
        pieces = sorted(base.rglob("*.webm"))
        assert len(pieces) == (2 if max_seconds == 0 else 7), [p.name for p in pieces]
        options = ComposeOptions(width=OUT_W, height=OUT_H, format="webm", video_codec="vp8")
        outputs[name] = compose(base, [span(0, 5)], options, tmp_path / f"{name}.webm").path
    whole_rate, whole = decode_audio(outputs["whole"])
    pieces_rate, cut = decode_audio(outputs["pieces"])
    assert whole_rate == pieces_rate
    n = min(whole.shape[1], cut.shape[1])
    assert abs(whole.shape[1] - cut.shape[1]) <= 960
    assert float(np.abs(whole[:, :n] - cut[:, :n]).max()) < 1e-3
    whole_frames, cut_frames = decode_video(outputs["whole"]), decode_video(outputs["pieces"])
    assert len(whole_frames) == len(cut_frames) == 150
    for (t1, a), (t2, b) in zip(whole_frames, cut_frames, strict=True):
        assert t1 == pytest.approx(t2, abs=1e-3)
        assert float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) < 1.0


def test_h264_bit_rate_is_capped(tmp_path: Path) -> None:
    """Capped CRF: noise, which CRF 23 alone spends megabits on, stays near the cap; the default cap is 3 Mbit/s
    at 720p30 in proportion to pixels per second."""
    from roomtape.recording.compose.options import default_video_bitrate

    assert default_video_bitrate(1280, 720, 30) == 3_000_000
    assert default_video_bitrate(1920, 1080, 30) == 6_750_000 and default_video_bitrate(160, 120, 15) == 300_000
    rng = np.random.default_rng(7)
    base = tmp_path / "noise"
    record_video(base, "alice", lambda i: rng.integers(0, 255, (H, W, 3), dtype=np.uint8), [(0, 3)])
    record_audio(base, "alice", tone(440, 3), [(0, 3)])
    rates = {}
    for cap in (150_000, 20_000_000):
        options = ComposeOptions(width=OUT_W, height=OUT_H, video_bitrate=cap)
        result = compose(base, [span(0, 3)], options, tmp_path / f"cap-{cap}.mp4")
        with av.open(str(result.path)) as container:
            video = container.streams.video[0]
            size = sum(p.size for p in container.demux(video) if p.size)
            frames = len(decode_video(result.path))
        assert frames == 90
        rates[cap] = size * 8 / 3.0
    print(f"video bit rate by cap: {rates}")
    # VBV: at most the rate for the whole clip plus one buffer (2 s of the rate) spent up front.
    assert rates[150_000] <= (150_000 * 3.0 + 2 * 150_000) / 3.0 * 1.05
    assert rates[20_000_000] > 3 * rates[150_000]  # without a binding cap CRF takes what noise needs
