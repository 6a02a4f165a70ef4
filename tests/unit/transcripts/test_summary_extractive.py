"""The extractive summarizer's choices: key points ranked by recurring content words, in speaking order;
action items by commitment phrases; times and speakers on every line."""

from __future__ import annotations

import pytest

from roomtape.transcripts.summary.base import SummaryError, TranscriptLine, clock
from roomtape.transcripts.summary.extractive import HEADER, MAX_KEY_POINTS, summarize_lines


def sections(text: str) -> tuple[list[str], list[str]]:
    keys = text.split("Key points:\n", 1)[1].split("\n\nAction items:\n", 1)
    return keys[0].splitlines(), keys[1].splitlines()


def test_recurring_topics_win_and_stay_in_speaking_order() -> None:
    lines = [
        TranscriptLine("Ann", 0, "Hello."),
        TranscriptLine("Ben", 10, "The database migration failed on the staging database."),
        TranscriptLine("Ann", 20, "Lunch was nice."),
        TranscriptLine("Ben", 30, "We rolled the database back before the migration finished."),
        TranscriptLine("Cy", 40, "The weather is cold."),
    ]
    keys, actions = sections(summarize_lines(lines, max_key_points=2))
    assert keys == [
        "- [00:10] Ben: The database migration failed on the staging database.",
        "- [00:30] Ben: We rolled the database back before the migration finished.",
    ]
    assert actions == ["- (none found)"]


@pytest.mark.parametrize(
    "sentence",
    ["I will email the client.", "I'll book the room.", "Let's ship it Friday.", "TODO: fix the flaky test.",
     "We need to hire a designer.", "Action item for Dana: update the wiki."],
)  # fmt: skip
def test_commitments_are_action_items(sentence: str) -> None:
    text = summarize_lines([TranscriptLine("Dana", 65, "The quarter went well. " + sentence)])
    _, actions = sections(text)
    assert actions == [f"- [01:05] Dana: {sentence}"]


def test_at_most_the_limit_of_key_points_and_the_header_first() -> None:
    lines = [TranscriptLine(f"S{i}", i, f"Topic number {i} about budget planning details.") for i in range(20)]
    text = summarize_lines(lines)
    assert text.splitlines()[0] == HEADER
    keys, _ = sections(text)
    assert len(keys) == MAX_KEY_POINTS


def test_nothing_to_pick_is_a_lasting_error() -> None:
    with pytest.raises(SummaryError) as err:
        summarize_lines([TranscriptLine("A", 0, "Hm."), TranscriptLine("B", 1, "   ")])
    assert err.value.retryable is False


def test_clock() -> None:
    assert (clock(0), clock(65.9), clock(3725)) == ("[00:00]", "[01:05]", "[1:02:05]")
