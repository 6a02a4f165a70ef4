"""A recording's transcript is on the composite's clock: paused spans are cut out of both."""

from __future__ import annotations

from roomtape.transcripts.model import TranscriptItem, Word
from roomtape.transcripts.store import cut_pauses, output_time

T0 = 1_700_000_000.0
# Recorded 0-10 s, paused 10-25 s, recorded 25-40 s (session clock = epoch - T0).
SPANS = [(T0, T0 + 10), (T0 + 25, T0 + 40)]


def test_output_time_maps_across_a_pause() -> None:
    assert output_time(T0 + 4, SPANS) == 4
    assert output_time(T0 + 10, SPANS) == 10
    assert output_time(T0 + 17, SPANS) == 10  # said while paused: lands where recording resumed
    assert output_time(T0 + 26.5, SPANS) == 11.5
    assert output_time(T0 + 99, SPANS) == 25  # after the stop: the end of the file
    assert output_time(T0 - 3, SPANS) == 0


def test_cut_pauses_moves_item_and_word_times() -> None:
    item = TranscriptItem(
        id="i",
        session_id="s",
        role="agent",
        content=("after the pause",),
        created_at=T0 + 30,
        start=30.0,
        end=32.0,
        start_epoch=T0 + 30,
        end_epoch=T0 + 32,
        words=(Word("after", 30.0, 30.5), Word("pause", 31.5, 32.0)),
    )
    moved = cut_pauses(item, SPANS, session_start_epoch=T0)
    assert (moved.start, moved.end) == (15.0, 17.0)
    assert [(w.start, w.end) for w in moved.words] == [(15.0, 15.5), (16.5, 17.0)]
    assert moved.start_epoch == T0 + 30  # the wall-clock instants are unchanged
