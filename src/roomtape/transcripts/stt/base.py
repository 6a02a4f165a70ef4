"""The speech-to-text seam: what a backend takes (16 kHz mono PCM), what it gives back (words with times).

A backend turns one stretch of audio into words timed from the stretch's first sample. Where that stretch
sits on the session clock is the caller's business (:mod:`roomtape.transcripts.stt.meeting`), so backends
stay small: the embedded :class:`~roomtape.transcripts.stt.sphinx.PocketSphinx` and the HTTP
:class:`~roomtape.transcripts.stt.openai_compat.OpenAITranscriptions` both satisfy :class:`SpeechToText`.
"""

from __future__ import annotations

import io
import wave
from dataclasses import dataclass
from typing import Protocol

from roomtape.errors import RoomtapeError

SAMPLE_RATE = 16_000
"""Every backend gets 16 kHz audio: pocketsphinx's acoustic model is trained on it, Whisper resamples to it."""


class SttError(RoomtapeError):
    """Speech-to-text failed.

    ``retryable`` is true when the backend was unreachable, overloaded or answered something unreadable (a
    later attempt may work), false when the request itself cannot succeed (refused credentials, a language
    the backend does not know).
    """


@dataclass(frozen=True, slots=True)
class PcmAudio:
    """Signed 16-bit little-endian mono samples."""

    samples: bytes
    sample_rate: int = SAMPLE_RATE

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return len(self.samples) / 2 / self.sample_rate

    def slice(self, start: float, end: float) -> PcmAudio:
        """The samples from ``start`` to ``end`` seconds."""
        first = max(0, int(start * self.sample_rate)) * 2
        last = max(first, int(end * self.sample_rate) * 2)
        return PcmAudio(self.samples[first:last], self.sample_rate)

    def wav(self) -> bytes:
        """The audio as a WAV file (what HTTP backends are sent)."""
        buf = io.BytesIO()
        with wave.open(buf, "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.sample_rate)
            out.writeframes(self.samples)
        return buf.getvalue()


@dataclass(frozen=True, slots=True)
class SpokenWord:
    """One recognised word, in seconds from the audio's first sample."""

    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Transcription:
    """What a backend heard in one stretch of audio."""

    text: str
    words: tuple[SpokenWord, ...]
    """In order; empty for silence."""
    duration: float
    """Length of the audio that was transcribed, seconds."""
    language: str | None = None
    backend: str = ""
    """Which backend (and model) produced it, e.g. ``pocketsphinx/en-us`` or ``openai/whisper-1``."""


@dataclass(frozen=True, slots=True)
class SttOptions:
    """Per-request hints (from a meeting's ``ai_config.transcription``)."""

    language: str | None = None
    """BCP 47 / ISO 639-1 language code (``en-US``, ``de``); ``None`` lets the backend decide."""
    keywords: tuple[str, ...] = ()
    """Terms to favour (sent as the prompt to OpenAI-compatible servers; pocketsphinx ignores them)."""


class SpeechToText(Protocol):
    """A speech-to-text backend."""

    @property
    def name(self) -> str:
        """Backend and model, e.g. ``pocketsphinx/en-us``."""
        ...

    async def transcribe(self, audio: PcmAudio, options: SttOptions = SttOptions()) -> Transcription:
        """Words heard in ``audio`` with times from its first sample; no words for silence or empty audio.

        Raises:
            SttError: The backend failed (``retryable`` says whether to try again).
        """
        ...

    async def aclose(self) -> None:
        """Release connections and models."""
        ...


def clean_words(words: list[SpokenWord], duration: float) -> tuple[SpokenWord, ...]:
    """Words clamped into ``[0, duration]``, in start order, each ending no earlier than it starts."""
    out = []
    for w in sorted(words, key=lambda w: w.start):
        start = min(max(0.0, w.start), duration)
        end = min(max(start, w.end), duration)
        if w.word.strip():
            out.append(SpokenWord(w.word.strip(), round(start, 3), round(end, 3), w.confidence))
    return tuple(out)
