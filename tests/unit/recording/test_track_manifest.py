from pathlib import Path

import pytest
from tests.unit.recording.recording_frames import audio, video

from roomtape.recording.manifest import MANIFEST_NAME, TrackManifest, load, save, segment_entry
from roomtape.recording.rtptime import ClockMapping
from roomtape.recording.writer import Gap, SegmentStats, TrackWriter


def _stats(tmp_path: Path) -> SegmentStats:
    writer = TrackWriter(tmp_path / "video-0001-1.webm")
    writer.write(video(0, key=True, rtp0=(1 << 32) - 3000))
    for i in range(1, 30):
        writer.write(video(i, rtp0=(1 << 32) - 3000))
    writer.write(video(60, rtp0=(1 << 32) - 3000))
    return writer.close()


def test_manifest_round_trip(tmp_path: Path) -> None:
    entry = segment_entry(1, _stats(tmp_path), complete=True)
    manifest = TrackManifest(session_id="s1", participant_id="p1", kind="video", segments=[entry])
    path = save(manifest, tmp_path)
    assert path == tmp_path / MANIFEST_NAME
    assert load(tmp_path) == manifest
    assert load(path) == manifest
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left

    loaded = load(path).segments[0]
    assert loaded.file == "video-0001-1.webm"
    assert loaded.first_rtp == (1 << 32) - 3000
    assert loaded.last_rtp == (1 << 32) - 3000 + 60 * 3000  # unwrapped past 2**32
    assert loaded.gaps == [Gap(offset_ms=966, duration_ms=1033)]
    assert loaded.timing_source == "arrival"
    assert loaded.start_epoch_ms == 1_700_000_000_000
    assert loaded.start == "2023-11-14T22:13:20.000Z"
    assert (loaded.frames, loaded.keyframes, loaded.width, loaded.height) == (31, 1, 320, 240)


def test_clock_mapping_sets_start_and_end(tmp_path: Path) -> None:
    stats = _stats(tmp_path)
    # The sender's clock says the first frame was captured 1.25 s before it arrived here.
    mapping = ClockMapping(ntp_epoch_seconds=1_699_999_998.75, rtp_timestamp=(1 << 32) - 3000)
    entry = segment_entry(1, stats, complete=False, clock_mapping=mapping)
    assert entry.timing_source == "rtcp_sr"
    assert entry.status == "recording"
    assert entry.start_epoch_ms == 1_699_999_998_750
    assert entry.end_epoch_ms == 1_699_999_998_750 + round(stats.duration_seconds * 1000)
    assert entry.clock_mapping is not None and entry.clock_mapping.rtp_timestamp == (1 << 32) - 3000


def test_segment_entry_needs_frames(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        segment_entry(1, TrackWriter(tmp_path / "x.webm").close(), complete=True)


def test_audio_entry(tmp_path: Path) -> None:
    writer = TrackWriter(tmp_path / "audio-0001-1.webm")
    for i in range(50):
        writer.write(audio(i))
    entry = segment_entry(1, writer.close(), complete=True)
    assert entry.codec == "opus" and entry.clock_rate == 48000
    assert entry.end_epoch_ms - entry.start_epoch_ms == 1000
