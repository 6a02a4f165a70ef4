from __future__ import annotations

import pytest

from roomtape.transcripts.stt import PcmAudio, PocketSphinx, SttError, SttOptions
from roomtape.transcripts.stt.base import SpokenWord, clean_words
from roomtape.transcripts.stt.openai_compat import parse_verbose_json


def test_words_are_read_with_probability() -> None:
    body = {
        "text": " hi there",
        "language": "english",
        "words": [
            {"word": "hi", "start": 0.5, "end": 0.7, "probability": 0.9},
            {"word": "there", "start": 0.8, "end": 1.1},
        ],
    }
    text, words, language = parse_verbose_json(body, 2.0)
    assert text == "hi there" and language == "english"
    assert words == [SpokenWord("hi", 0.5, 0.7, 0.9), SpokenWord("there", 0.8, 1.1, None)]


def test_segments_only_spread_their_words_over_the_segment() -> None:
    _text, words, _ = parse_verbose_json({"text": "a b", "segments": [{"start": 1.0, "end": 2.0, "text": " a b"}]}, 3)
    assert [(w.word, w.start, w.end) for w in words] == [("a", 1.0, 1.5), ("b", 1.5, 2.0)]


def test_text_only_is_one_stretch() -> None:
    _, words, _ = parse_verbose_json({"text": "hello"}, 3.0)
    assert words == [SpokenWord("hello", 0.0, 3.0)]


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"words": []},
        {"text": 3},
        {"text": "x", "words": [{"word": "x", "start": float("nan"), "end": 1}]},
        {"text": "x", "words": [{"word": "x", "start": True, "end": 1}]},
        {"text": "x", "words": ["x"]},
    ],
)
def test_malformed_answers_are_retryable_errors(body: object) -> None:
    with pytest.raises(SttError) as info:
        parse_verbose_json(body, 1.0)
    assert info.value.retryable


def test_clean_words_clamps_sorts_and_drops_blanks() -> None:
    words = [SpokenWord("b", 2.5, 9.0), SpokenWord(" ", 0.1, 0.2), SpokenWord("a", -1.0, 0.4)]
    assert clean_words(words, 3.0) == (SpokenWord("a", 0.0, 0.4), SpokenWord("b", 2.5, 3.0))


async def test_pocketsphinx_refuses_other_languages_for_good() -> None:
    with pytest.raises(SttError) as info:
        await PocketSphinx().transcribe(PcmAudio(b"\0\0" * 160), SttOptions(language="de"))
    assert not info.value.retryable
