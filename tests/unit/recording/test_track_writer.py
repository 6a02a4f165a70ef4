from pathlib import Path

import av
import pytest
from tests.unit.recording.recording_frames import audio, video

from roomtape.recording.writer import Gap, TrackWriter


def test_video_waits_for_a_keyframe_and_asks_for_one(tmp_path: Path) -> None:
    requests: list[int] = []
    writer = TrackWriter(tmp_path / "v.webm", on_keyframe_needed=lambda: requests.append(1))
    for i in range(45):  # 1.5 s of delta frames
        assert not writer.write(video(i))
    assert writer.needs_keyframe
    assert requests == [1, 1]  # once at the start, then at most once a second
    assert not (tmp_path / "v.webm").exists()
    assert writer.write(video(45, key=True))
    assert not writer.needs_keyframe
    assert writer.write(video(46))
    stats = writer.close()
    assert stats.dropped_before_keyframe == 45
    assert (stats.frames, stats.keyframes, stats.width, stats.height) == (2, 1, 320, 240)
    assert stats.first_rtp == 45 * 3000
    with av.open(str(tmp_path / "v.webm")) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    assert packets[0].is_keyframe
    assert [p.pts for p in packets] == [0, 33]


def test_audio_stats_gaps_and_late_frames(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path / "a.webm")
    for i in [0, 1, 2, 3, 2, 3, 30, 31]:  # a duplicate, a late frame, then 540 ms of nothing
        writer.write(audio(i))
    stats = writer.close()
    assert stats.frames == 6
    assert stats.dropped_late == 2
    assert stats.gaps == (Gap(offset_ms=60, duration_ms=540),)
    assert stats.start_ms == 1_700_000_000_000
    assert stats.end_ms == 1_700_000_000_000 + 32 * 20
    assert stats.duration_seconds == pytest.approx(0.64)
    assert stats.bytes == 6 * len(audio(0).data)


def test_writer_refuses_a_codec_change_and_writing_after_close(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path / "a.webm")
    writer.write(audio(0))
    with pytest.raises(ValueError):
        writer.write(video(1, key=True))
    writer.close()
    writer.close()  # twice is fine
    with pytest.raises(ValueError):
        writer.write(audio(1))


def test_writer_without_frames_creates_no_file(tmp_path: Path) -> None:
    stats = TrackWriter(tmp_path / "a.webm").close()
    assert stats.frames == 0 and stats.path is None and stats.start_ms is None
    assert list(tmp_path.iterdir()) == []
