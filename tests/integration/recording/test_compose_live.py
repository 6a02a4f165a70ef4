"""The renderer's two drivers give the same file: live (following track files while the recorder writes them)
and from the closed files afterwards. Real VP8/Opus written in real time by the real recorder, a pause, a late
joiner, a mute/unmute (a new segment while the render follows) and an audio track split every 1.5 s."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from tests.integration.recording.compose_media import (
    PACKET,
    RATE,
    SESSION,
    decode_audio,
    decode_video,
    encode_opus,
    encode_vp8,
    solid,
    tone,
)

from roomtape.errors import InvalidInput
from roomtape.recording.compose.feed import LiveControl, LiveFeed, write_control
from roomtape.recording.compose.timeline import Timeline, recorded_spans
from roomtape.recording.composer import ComposeCancelled, ComposeOptions, compose, compose_live
from roomtape.recording.frame import EncodedFrame
from roomtape.recording.manifest import load
from roomtape.recording.segmenter import TrackRecorder

FPS = 15
SECONDS = 6.0


def _sleep_until(t: float) -> None:
    delay = t - time.time()
    if delay > 0:
        time.sleep(delay)


def write_live(base: Path, t0: float) -> None:
    """alice: red + 440 Hz from 0 s (audio split every 1.5 s); bob: blue from 2 s, muted 3.5..4.2 s.

    Everything is written at its wall-clock time."""
    alice_v = TrackRecorder(base, SESSION, "alice", "video")
    alice_a = TrackRecorder(base, SESSION, "alice", "audio", max_segment_seconds=1.5)  # split while followed
    bob_v = TrackRecorder(base, SESSION, "bob", "video")
    red = encode_vp8([solid((220, 30, 30), 160, 120)] * round(SECONDS * FPS), FPS)
    blue_frames = round((SECONDS - 2) * FPS)
    blue = encode_vp8([solid((30, 30, 220), 160, 120)] * blue_frames, FPS, gop=5)
    audio = encode_opus(np.concatenate([tone(440, SECONDS)[312:], np.zeros(312)]))
    events: list[tuple[float, TrackRecorder, EncodedFrame | str]] = []
    for i, (data, key) in enumerate(red):
        events.append((i / FPS, alice_v, EncodedFrame(data, i * 6000, 90000, key, t0 + i / FPS, "vp8")))
    for j, data in enumerate(audio):
        at = j * PACKET / RATE
        events.append((at, alice_a, EncodedFrame(data, j * PACKET, RATE, True, t0 + at, "opus")))
    for k, (data, key) in enumerate(blue):
        at = 2 + k / FPS
        if 3.5 <= at < 4.2:
            continue
        if abs(at - 4.2) < 0.5 / FPS:
            events.append((at - 0.001, bob_v, "unmute"))
        events.append((at, bob_v, EncodedFrame(data, k * 6000, 90000, key, t0 + at, "vp8")))
    events.append((3.5, bob_v, "mute"))
    events.sort(key=lambda e: e[0])
    for at, recorder, what in events:
        _sleep_until(t0 + at)
        if what == "mute":
            recorder.on_mute()
        elif what == "unmute":
            recorder.on_unmute()
        else:
            assert isinstance(what, EncodedFrame)
            recorder.write(what)
    for recorder in (alice_v, alice_a, bob_v):
        recorder.close()


def test_live_render_equals_the_render_from_files(tmp_path: Path) -> None:
    base = tmp_path / "rec"
    t0 = time.time() + 0.3
    start_ms = round(t0 * 1000)
    pause = [start_ms + 1000, start_ms + 1600]
    options = ComposeOptions(width=320, height=240, fps=FPS, preset="ultrafast")
    write_control(base, LiveControl(start_ms))
    writer = threading.Thread(target=write_live, args=(base, t0))
    writer.start()
    out: dict[str, object] = {}

    def render() -> None:
        try:
            out["result"] = compose_live(
                LiveFeed(base, lag=1.0, presence_grace_ms=options.presence_grace_ms), options, tmp_path / "live.mp4"
            )
        except BaseException as exc:  # reported by the assertion below
            out["error"] = exc

    renderer = threading.Thread(target=render)
    renderer.start()
    _sleep_until(t0 + 1.05)
    write_control(base, LiveControl(start_ms, [[pause[0], None]]))
    _sleep_until(t0 + 1.65)
    write_control(base, LiveControl(start_ms, [pause]))
    writer.join()
    spans = recorded_spans(start_ms, [pause], start_ms + round(SECONDS * 1000))
    live_file = tmp_path / "live.mp4"
    assert not (tmp_path / "live.mp4").exists()  # still rendering: nothing in place before the stop
    write_control(base, LiveControl(start_ms, [pause], [list(s) for s in spans]))
    stopped = time.monotonic()
    renderer.join(timeout=60)
    tail = time.monotonic() - stopped
    assert "error" not in out, out.get("error")
    assert len(load(base / SESSION / "alice" / "audio").segments) >= 4  # the split happened
    files = compose(base, spans, options, tmp_path / "files.mp4")
    live = out["result"]
    print(f"live render's tail after the stop: {tail:.2f} s")
    assert tail < 10

    assert live.duration_seconds == files.duration_seconds == pytest.approx(SECONDS - 0.6)  # type: ignore[attr-defined]
    assert live.participants == files.participants == ("alice", "bob")  # type: ignore[attr-defined]
    live_frames, file_frames = decode_video(live_file), decode_video(tmp_path / "files.mp4")
    assert len(live_frames) == len(file_frames) == round((SECONDS - 0.6) * FPS)
    for (ta, a), (tb, b) in zip(live_frames, file_frames, strict=True):
        assert ta == pytest.approx(tb)
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 2, ta  # the same pictures
    # bob's blue tile: from 2 s of wall time (1.4 s of output, after the pause), gone while muted
    blue = [float(np.all(np.abs(img.astype(int) - (30, 30, 220)) < 50, axis=2).mean()) for _, img in live_frames]
    times = np.array([t for t, _ in live_frames])
    assert all(b < 0.01 for b, t in zip(blue, times, strict=True) if t < 1.3)
    assert all(b > 0.1 for b, t in zip(blue, times, strict=True) if 1.5 < t < 2.8 or 3.7 < t < 5.3)
    _, live_audio = decode_audio(live_file)
    _, file_audio = decode_audio(tmp_path / "files.mp4")
    assert live_audio.shape == file_audio.shape
    assert np.abs(live_audio - file_audio).max() < 1e-3
    assert np.sqrt(np.mean(live_audio**2)) > 0.05  # the tone is there


def test_live_feed_refuses_a_pause_before_what_it_rendered() -> None:
    timeline = Timeline([(0, 1000)])
    timeline.extend([(0, 2000)])
    timeline.extend([(0, 2500), (3000, 3100)])
    assert timeline.total_samples == 2600 * 48
    with pytest.raises(ValueError, match="do not extend"):
        timeline.extend([(0, 2400), (3000, 3200)])
    with pytest.raises(InvalidInput):
        Timeline([])


def test_live_feed_waits_for_the_start_and_can_be_cancelled(tmp_path: Path) -> None:
    cancel = threading.Event()
    threading.Timer(0.3, cancel.set).start()
    with pytest.raises(ComposeCancelled):
        LiveFeed(tmp_path, lag=1.0, cancel=cancel)  # no control file: it waits, until cancelled
