"""The dashboard's formatting and timeline, without a server."""

from __future__ import annotations

from roomtape.recording.manifest import SegmentEntry, TrackManifest
from roomtape.web.dashboard import (
    MEETING_TITLE_MAX,
    clock,
    duration,
    human_size,
    local_time,
    meeting_title_problem,
    timeline,
    timeline_json,
)


def test_times_and_sizes() -> None:
    assert clock(0) == "00:00.000"
    assert clock(61.2345) == "01:01.234"
    assert clock(3600.5) == "60:00.500"
    assert duration(None) == "—" and duration(59.6) == "1:00" and duration(3725) == "1:02:05"
    assert human_size(None) == "—" and human_size(999) == "999 B" and human_size(322_400) == "322.4 kB"
    assert human_size(5_300_000_000) == "5.3 GB"
    assert local_time("2026-11-21T08:25:35.5Z") == "2026-11-21 08:25:35 UTC"


def segment(index: int, start_ms: int, end_ms: int) -> SegmentEntry:
    return SegmentEntry(
        index=index,
        file=f"audio-{index:04d}.webm",
        status="complete",
        codec="opus",
        clock_rate=48000,
        start_epoch_ms=start_ms,
        end_epoch_ms=end_ms,
        start="",
        end="",
        timing_source="arrival",
        first_rtp=0,
        last_rtp=0,
        frames=1,
        keyframes=1,
        bytes=1,
    )


def test_timeline_puts_segments_on_the_recording_clock_per_participant() -> None:
    origin = 1_700_000_000.0
    agent = TrackManifest(
        session_id="s",
        participant_id="p-agent",
        kind="audio",
        segments=[segment(1, 1_700_000_000_250, 1_700_000_009_000)],
    )
    user = TrackManifest(
        session_id="s",
        participant_id="p-user",
        kind="audio",
        segments=[segment(2, 1_700_000_005_000, 1_700_000_008_000), segment(1, 1_700_000_001_500, 1_700_000_004_000)],
    )
    video = TrackManifest(
        session_id="s",
        participant_id="p-user",
        kind="video",
        segments=[segment(1, 1_700_000_000_000, 1_700_000_002_000)],
    )
    rows = timeline([user, agent, video], origin, {"p-agent": "Agent"})
    assert [r.name for r in rows] == ["p-user", "Agent"]  # by first segment; the id when no name is known
    assert [(s.kind, s.index, s.start, s.end) for s in rows[0].segments] == [
        ("video", 1, 0.0, 2.0),
        ("audio", 1, 1.5, 4.0),
        ("audio", 2, 5.0, 8.0),
    ]
    assert rows[1].segments[0].start == 0.25
    assert timeline_json(rows)[1] == {
        "participant_id": "p-agent",
        "name": "Agent",
        "segments": [{"kind": "audio", "index": 1, "start": 0.25, "end": 9.0, "file": "audio-0001.webm"}],
    }


def test_meeting_titles_from_the_new_meeting_form() -> None:
    assert meeting_title_problem("Weekly sync") is None
    assert meeting_title_problem("x" * MEETING_TITLE_MAX) is None
    for empty in ("", "   ", "\t\n"):
        problem = meeting_title_problem(empty)
        assert problem is not None and problem.startswith("Give the meeting a title")
    too_long = meeting_title_problem("x" * (MEETING_TITLE_MAX + 1))
    assert too_long is not None and f"{MEETING_TITLE_MAX + 1}" in too_long
    assert meeting_title_problem("a\x00b") == "A title cannot contain NUL characters. Nothing was created."
