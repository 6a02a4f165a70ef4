import itertools
from pathlib import Path

import av
from tests.unit.recording.recording_frames import audio, video

from roomtape.recording.manifest import load
from roomtape.recording.segmenter import TrackRecorder, track_directory

T0 = 1_700_000_000.0


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob("*.webm"))


def test_layout_and_file_names(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "sess", "part", "audio")
    assert recorder.directory == tmp_path / "sess" / "part" / "audio"
    assert track_directory(tmp_path, "sess", "part", "audio") == recorder.directory
    for i in range(10):
        recorder.write(audio(i))
    recorder.close()
    assert _files(recorder.directory) == [f"audio-0001-{int(T0 * 1000)}.webm"]


def test_gap_in_frames_starts_a_new_file(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "audio", gap_seconds=2.0)
    for i in range(50):
        assert recorder.write(audio(i))
    for i in range(50, 60):  # a 1 s pause stays in the same file
        recorder.write(audio(i + 50))
    for i in range(60, 70):  # then 3 s of nothing
        recorder.write(audio(i + 250))
    segments = recorder.close()
    assert [(s.index, s.frames, s.status) for s in segments] == [(1, 60, "complete"), (2, 10, "complete")]
    assert segments[0].gaps[0].duration_ms == 1020
    assert segments[1].start_epoch_ms == round((T0 + 310 * 0.02) * 1000)
    assert len(_files(recorder.directory)) == 2


def test_empty_frames_do_not_keep_a_segment_alive(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "audio", gap_seconds=2.0)
    recorder.write(audio(0))
    for i in range(1, 200):  # 4 s of empty payloads
        assert not recorder.write(audio(i, data=b""))
    recorder.write(audio(200))
    assert [s.frames for s in recorder.close()] == [1, 1]


def test_rtp_jump_backwards_is_a_restart(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "audio")
    for i in range(10):
        recorder.write(audio(i, rtp0=5_000_000))
    for i in range(10, 20):  # a new sender: continuous arrival, unrelated timestamps
        recorder.write(audio(i, rtp0=1_000))
    assert [s.frames for s in recorder.close()] == [10, 10]


def test_unmute_starts_a_new_file(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "audio")
    for i in range(10):
        recorder.write(audio(i))
    recorder.on_mute()
    assert [s.status for s in load(recorder.directory).segments] == ["complete"]
    recorder.on_unmute()
    for i in range(10, 20):  # no gap at all (a browser that sent silence while muted)
        recorder.write(audio(i))
    recorder.on_restart()
    for i in range(20, 25):
        recorder.write(audio(i))
    segments = recorder.close()
    assert [(s.index, s.frames) for s in segments] == [(1, 10), (2, 10), (3, 5)]
    assert load(recorder.directory).segments == segments


def test_video_segment_waits_for_keyframe(tmp_path: Path) -> None:
    requests: list[int] = []
    recorder = TrackRecorder(tmp_path, "s", "p", "video", on_keyframe_needed=lambda: requests.append(1))
    assert not recorder.write(video(0))
    assert recorder.needs_keyframe and requests == [1]
    assert recorder.write(video(1, key=True))
    for i in range(2, 10):
        recorder.write(video(i))
    recorder.on_unmute()
    assert requests == [1, 1]  # asked at once for the next segment's keyframe
    for i in range(10, 15):
        assert not recorder.write(video(i))
    assert recorder.write(video(15, key=True))
    recorder.write(video(16))
    segments = recorder.close()
    assert [(s.frames, s.keyframes, s.dropped_before_keyframe) for s in segments] == [(9, 1, 1), (2, 1, 5)]
    for name in _files(recorder.directory):
        with av.open(str(recorder.directory / name)) as container:
            first = next(p for p in container.demux(video=0) if p.size)
            assert first.is_keyframe


def test_manifest_tracks_open_segment_and_idle_close(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "audio", gap_seconds=2.0)
    recorder.set_clock_mapping(T0 - 0.1, 0)
    recorder.write(audio(0))
    manifest = load(recorder.directory)
    assert [(s.status, s.frames, s.timing_source) for s in manifest.segments] == [("recording", 1, "rtcp_sr")]
    assert manifest.segments[0].start_epoch_ms == round((T0 - 0.1) * 1000)
    recorder.write(audio(1))
    assert not recorder.check_idle(T0 + 1.0)
    assert recorder.check_idle(T0 + 3.0)
    assert [(s.status, s.frames) for s in load(recorder.directory).segments] == [("complete", 2)]


def test_restarted_recorder_continues_numbering(tmp_path: Path) -> None:
    first = TrackRecorder(tmp_path, "s", "p", "audio")
    first.write(audio(0))
    first.close()
    second = TrackRecorder(tmp_path, "s", "p", "audio")
    second.write(audio(500))
    assert [s.index for s in second.close()] == [1, 2]
    assert len(_files(second.directory)) == 2


def test_segment_without_frames_leaves_no_entry(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "video")
    recorder.write(video(0))  # never a keyframe
    assert recorder.close() == []
    recorder.write(video(1, key=True))
    assert [s.index for s in recorder.close()] == [1]


def test_max_segment_seconds_splits_audio_at_the_next_frame(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "audio", max_segment_seconds=1.0)
    for i in range(125):  # 2.5 s of 20 ms packets
        assert recorder.write(audio(i))
    segments = recorder.close()
    assert [s.frames for s in segments] == [50, 50, 25]  # nothing dropped, each piece 1 s
    # The pieces abut: each starts where the previous one ended.
    assert [b.start_epoch_ms - a.end_epoch_ms for a, b in itertools.pairwise(segments)] == [0, 0]
    assert sum(s.frames for s in segments) == 125


def test_max_segment_seconds_splits_video_at_a_keyframe_it_asks_for(tmp_path: Path) -> None:
    requests: list[int] = []
    recorder = TrackRecorder(
        tmp_path, "s", "p", "video", max_segment_seconds=1.0, on_keyframe_needed=lambda: requests.append(1)
    )
    keyframes = {0, 40, 75}  # the publisher answers the request made at frame 30 with a keyframe at 40
    for i in range(90):
        assert recorder.write(video(i, key=i in keyframes))
    segments = recorder.close()
    assert [s.frames for s in segments] == [40, 35, 15]  # split at the keyframes, after 1 s
    assert [s.keyframes for s in segments] == [1, 1, 1]
    assert len(requests) == 2  # asked once per split (frames 30 and 70), not once per frame
    for segment in segments:
        with av.open(str(recorder.directory / segment.file)) as container:
            assert sum(1 for p in container.demux(video=0) if p.size) == segment.frames


def test_a_rotated_segment_is_timed_from_the_previous_one_by_rtp(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path, "s", "p", "audio", max_segment_seconds=1.0)
    for i in range(60):
        recorder.write(audio(i))
    recorder.set_clock_mapping(T0 + 5.0, 0)  # a sender report 5 s off arrival: it must not move the next piece
    for i in range(60, 80):
        recorder.write(audio(i, t0=T0 + 0.3))  # late arrivals (a stall) do not either
    first, second = recorder.close()
    assert second.start_epoch_ms == first.start_epoch_ms + 50 * 20  # 50 packets of 20 ms after the first's start
    assert second.end_epoch_ms - second.start_epoch_ms == 30 * 20
    assert second.timing_source == first.timing_source == "arrival"
    recorder.on_unmute()  # a real break: timed afresh, from the sender report
    for i in range(200, 210):
        recorder.write(audio(i))
    assert recorder.close()[-1].timing_source == "rtcp_sr"
