"""Speech-to-text behind one seam: :class:`SpeechToText`, an embedded offline backend and an HTTP one."""

from roomtape.transcripts.stt.audio import load_pcm
from roomtape.transcripts.stt.base import (
    SAMPLE_RATE,
    PcmAudio,
    SpeechToText,
    SpokenWord,
    SttError,
    SttOptions,
    Transcription,
)
from roomtape.transcripts.stt.openai_compat import OpenAITranscriptions
from roomtape.transcripts.stt.registry import stt_backend
from roomtape.transcripts.stt.sphinx import PocketSphinx

__all__ = [
    "SAMPLE_RATE",
    "OpenAITranscriptions",
    "PcmAudio",
    "PocketSphinx",
    "SpeechToText",
    "SpokenWord",
    "SttError",
    "SttOptions",
    "Transcription",
    "load_pcm",
    "stt_backend",
]
