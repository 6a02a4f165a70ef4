"""Pure parts of the composer: the timeline, layouts, channel maps, the limiter and speaker detection."""

from pathlib import Path

import numpy as np
import pytest

from roomtape.errors import InvalidInput
from roomtape.recording.compose.audio import Limiter, SpeakerDetector, level_db
from roomtape.recording.compose.layout import Rect, arrange
from roomtape.recording.compose.options import ComposeOptions
from roomtape.recording.compose.timeline import Participant, Segment, Timeline
from roomtape.recording.composer import Composer, _keep_order

T = 1_700_000_000_000


def test_timeline_cuts_paused_spans() -> None:
    timeline = Timeline([(T, T + 3000), (T + 5000, T + 8000)])
    assert timeline.duration_seconds == 6.0
    assert timeline.to_wall(0) == 0
    assert timeline.to_wall(3 * 48000 - 1) == 3 * 48000 - 1
    assert timeline.to_wall(3 * 48000) == 5 * 48000  # the pause is skipped
    assert timeline.pieces(2 * 48000, 4 * 48000) == [(2 * 48000, 48000), (5 * 48000, 48000)]
    assert timeline.wall_ms(timeline.wall_sample(T + 5123)) == T + 5123
    assert timeline.overlaps(T + 2000, T + 4000) and not timeline.overlaps(T + 3000, T + 5000)


@pytest.mark.parametrize("spans", [[], [(T, T)], [(T, T + 10), (T + 5, T + 20)]])
def test_timeline_rejects_bad_spans(spans: list[tuple[int, int]]) -> None:
    with pytest.raises(InvalidInput):
        Timeline(spans)


def test_presence_merges_short_gaps() -> None:
    p = Participant(
        "a",
        {
            "audio": [Segment(Path("1"), "audio", 0, 1000), Segment(Path("2"), "audio", 2500, 3000)],
            "video": [Segment(Path("3"), "video", 500, 1200)],
        },
    )
    assert p.intervals() == [(0, 1200), (2500, 3000)]
    assert p.intervals(grace_ms=2000) == [(0, 3000)]
    assert p.first_ms == 0


def test_grid_layout() -> None:
    one = arrange(320, 240, "grid", ["a"], [])
    assert [t.source for t in one] == [("a", "video")] and one[0].rect.w > 300
    three = arrange(320, 240, "grid", ["a", "b", "c"], [])
    assert [t.rect.y for t in three] == [0, 0, 120]
    assert three[2].rect.x == 80  # the incomplete last row is centred
    for tile in three:
        assert all(v % 2 == 0 for v in (tile.rect.x, tile.rect.y, tile.rect.w, tile.rect.h))


def test_screen_share_takes_the_main_area() -> None:
    tiles = arrange(320, 240, "grid", ["a", "b"], ["b"])
    assert tiles[0].source == ("b", "screen_video") and tiles[0].rect.h > 150
    assert [t.source for t in tiles[1:]] == [("a", "video"), ("b", "video")]
    assert all(t.rect.y >= 180 for t in tiles[1:])


def test_active_speaker_layout_puts_the_speaker_big() -> None:
    tiles = arrange(320, 240, "active_speaker", ["a", "b", "c"], [], speaker="b")
    assert tiles[0].source == ("b", "video") and tiles[0].rect == Rect(0, 0, 318, 178)
    assert [t.source[0] for t in tiles[1:]] == ["a", "c"]


def test_limiter_keeps_the_mix_under_full_scale() -> None:
    limiter = Limiter()
    quiet = np.full((1, 1600), 0.5, np.float32)
    assert np.array_equal(limiter.process(quiet.copy()), quiet)
    loud = np.full((2, 1600), 1.8, np.float32)
    out = limiter.process(loud)
    assert np.abs(out).max() <= 1.0 and out[:, -1].max() == pytest.approx(0.98, abs=0.01)
    recovered = [limiter.process(quiet.copy())[0, -1] for _ in range(60)]
    assert recovered[0] < 0.5 and recovered[-1] == pytest.approx(0.5, abs=0.01)


def test_speaker_detector_holds_and_needs_a_margin() -> None:
    detector = SpeakerDetector(hold_seconds=1.0, margin_db=3.0)
    step = 1 / 30
    t = 0.0
    for _ in range(30):
        assert detector.update(t, step, {"a": -10.0, "b": -30.0}) == "a"
        t += step
    for _ in range(30):  # b only slightly louder: a keeps it
        assert detector.update(t, step, {"a": -20.0, "b": -18.5}) == "a"
        t += step
    changes = []
    for _ in range(60):
        changes.append(detector.update(t, step, {"a": -40.0, "b": -10.0}))
        t += step
    assert changes[-1] == "b" and changes.index("b") < 20
    assert detector.update(t, step, {"a": -10.0}) == "a"  # the speaker left


def test_level_db() -> None:
    assert level_db(None) == -60.0
    assert level_db(np.full((1, 100), 0.5, np.float32)) == pytest.approx(-6.02, abs=0.01)


def test_channel_maps(tmp_path: Path) -> None:
    def channel_map(**kwargs: object) -> tuple[tuple[str, ...], ...]:
        composer = Composer(tmp_path, [(T, T + 1000)], ComposeOptions(**kwargs))  # type: ignore[arg-type]
        return composer._channel_map(["a", "b", "agent"])

    assert channel_map(channels="mono") == (("a", "b", "agent"),)
    assert channel_map(channels="stereo") == (("a", "b", "agent"),) * 2
    assert channel_map(channels="per_speaker") == (("a",), ("b",), ("agent",))
    assert channel_map(channels="agent_stereo", agent_participant_id="agent") == (("a", "b"), ("agent",))


@pytest.mark.parametrize(
    "options",
    [
        ComposeOptions(width=321),
        ComposeOptions(fps=0),
        ComposeOptions(format="mp4", video_codec="vp8"),
        ComposeOptions(channels="agent_stereo"),
        ComposeOptions(sample_rate=12345),
    ],
)
def test_bad_options_are_refused(options: ComposeOptions, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput):
        Composer(tmp_path, [(T, T + 1000)], options)


def test_final_spans_that_end_before_the_live_timeline_keep_what_was_rendered() -> None:
    from roomtape.recording.compose.feed import _keep_rendered

    # The stop's spans came late: the live horizon had gone 243 ms past the stop. The render keeps it.
    assert _keep_rendered([(1000, 9680)], [(1000, 9923)]) == [(1000, 9923)]
    assert _keep_rendered([(0, 500), (900, 1680)], [(0, 500), (900, 1923)]) == [(0, 500), (900, 1923)]
    # Spans that do extend the timeline, or change it elsewhere (an error later), are left as they are.
    assert _keep_rendered([(1000, 9990)], [(1000, 9923)]) == [(1000, 9990)]
    assert _keep_rendered([(1000, 5000), (6000, 9990)], [(1000, 9923)]) == [(1000, 5000), (6000, 9990)]
    assert _keep_rendered([(1000, 9000)], []) == [(1000, 9000)]


def test_a_live_render_keeps_its_tile_order_when_a_refresh_reorders_participants() -> None:
    def person(pid: str, first_ms: int) -> Participant:
        return Participant(pid, {"audio": [Segment(Path(f"{pid}.webm"), "audio", first_ms, first_ms + 10_000)]})

    # discover() orders by (first media, id): a start that moved to a tie puts "b" first, but "z" was laid out
    # first and stays there; a newcomer goes after everyone already on screen.
    found = [person("b", 1_000), person("new", 500), person("z", 1_000)]
    assert [p.participant_id for p in _keep_order(found, ["z", "b"])] == ["z", "b", "new"]
    assert [p.participant_id for p in _keep_order(found, [])] == ["new", "b", "z"]
