"""Word timings of the embedded backend line up with the audio: each phrase's first word starts within 100 ms
of the phrase's onset as measured in the signal (energy), after the speech went through a recorded Opus
segment file like a meeting's.

The phrases are ones whose first word PocketSphinx hears from espeak-ng's voice (or a word like it: "what"
as "will"): a first word not heard at all ("thank you" heard as "you") is a recognition error, not a timing
one, and ``bench/stt_accuracy.py`` reports both kinds on a wider set. At least half the first words must be
the right ones, so the test cannot pass by hearing mere sound.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from tests.integration.recording.compose_media import RATE, SESSION, record_audio
from tests.speech import concatenate

from roomtape.transcripts.stt import PcmAudio, PocketSphinx, load_pcm

PHRASES = [
    "good morning everyone",
    "i agree with that",
    "what do you think about the new design",
    "see you tomorrow",
    "i will share my screen",
    "the server was down for two hours",
    "i have a question about the schedule",
    "good afternoon",
]


def _recorded(audio: PcmAudio) -> PcmAudio:
    x = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64) / 32768
    up = np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)
    with tempfile.TemporaryDirectory() as tmp:
        record_audio(Path(tmp), "p", np.concatenate([up, np.zeros(960)]), [(0.0, len(up) / RATE)])
        (segment,) = Path(tmp, SESSION, "p", "audio").glob("*.webm")
        return load_pcm(segment)


async def test_first_words_start_within_100ms_of_measured_phrase_onsets() -> None:
    audio, phrases = concatenate(PHRASES, gap=1.3, lead=1.0)
    recorded = _recorded(audio)
    assert abs(recorded.duration - audio.duration) < 0.05
    heard = await PocketSphinx().transcribe(recorded)
    right_first_word = 0
    for phrase in phrases:
        inside = [w for w in heard.words if phrase.start - 0.2 <= w.start < phrase.end]
        assert inside, f"nothing heard in {phrase.text!r}"
        first = inside[0]
        assert abs(first.start - phrase.onset) <= 0.1, (phrase.text, first, phrase.onset)
        right_first_word += first.word == phrase.text.split()[0]
    assert right_first_word >= len(PHRASES) // 2, heard.text  # it hears the words, not just sound
    # Nothing is heard in the silences between phrases.
    for w in heard.words:
        assert any(p.start - 0.2 <= w.start < p.end for p in phrases), w
