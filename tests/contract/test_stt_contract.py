"""One contract for every speech-to-text backend: the embedded PocketSphinx and the OpenAI-compatible HTTP
client (against a real transcription server on loopback, see ``stt_server.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from tests.contract.stt_server import SttServer
from tests.speech import concatenate, silence, word_error_rate

from roomtape.transcripts.stt import OpenAITranscriptions, PcmAudio, PocketSphinx, SpeechToText, SttOptions

BACKENDS = ["pocketsphinx", "openai"]
PHRASES = ["good morning everyone", "i agree with that", "what do you think about the new design", "see you tomorrow"]
"""Phrases PocketSphinx hears well in espeak's voice (see bench/stt_accuracy.py for a harder set)."""


@pytest.fixture(scope="module")
def stt_server() -> Iterator[SttServer]:
    server = SttServer().start()
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
async def stt(request: pytest.FixtureRequest) -> AsyncIterator[SpeechToText]:
    backend: SpeechToText
    if request.param == "pocketsphinx":
        backend = PocketSphinx()
    else:
        server: SttServer = request.getfixturevalue("stt_server")
        backend = OpenAITranscriptions(server.url, "tiny-test-model")
    try:
        yield backend
    finally:
        await backend.aclose()


async def test_hears_speech_with_ordered_word_times(stt: SpeechToText) -> None:
    audio, _ = concatenate(PHRASES, gap=1.3, lead=1.0)
    heard = await stt.transcribe(audio)
    errors, length = word_error_rate(" ".join(PHRASES), heard.text)
    assert errors / length <= 0.5, heard.text
    assert heard.text == " ".join(w.word for w in heard.words)
    assert heard.duration == pytest.approx(audio.duration, abs=0.01)
    starts = [w.start for w in heard.words]
    assert starts == sorted(starts)
    assert all(0 <= w.start <= w.end <= audio.duration for w in heard.words)
    assert stt.name


async def test_word_times_count_from_the_audio_start(stt: SpeechToText) -> None:
    audio, phrases = concatenate(["good morning everyone", "see you tomorrow"], gap=2.0, lead=3.0)
    heard = await stt.transcribe(audio)
    first, second = phrases
    assert heard.words and heard.words[0].start >= first.start - 0.1
    in_second = [w for w in heard.words if w.start >= second.start - 0.1]
    assert in_second, heard.words
    assert all(w.start < first.end + 0.1 for w in heard.words if w not in in_second)
    assert abs(in_second[0].start - second.onset) < 0.3


async def test_silence_gives_no_words(stt: SpeechToText) -> None:
    heard = await stt.transcribe(silence(3.0))
    assert heard.words == () and heard.text == ""


async def test_empty_audio_gives_no_words(stt: SpeechToText) -> None:
    heard = await stt.transcribe(PcmAudio(b""))
    assert heard.words == () and heard.duration == 0


async def test_english_language_hint_is_accepted(stt: SpeechToText) -> None:
    audio, _ = concatenate(["good morning everyone"])
    heard = await stt.transcribe(audio, SttOptions(language="en-US", keywords=("morning",)))
    assert "morning" in heard.text
