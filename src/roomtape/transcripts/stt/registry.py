"""Choosing the speech-to-text backend from the settings.

An OpenAI-compatible server when ``ROOMTAPE_STT_URL`` is set, else the embedded PocketSphinx (one per
process: its model takes seconds to load).
"""

from __future__ import annotations

import threading

from roomtape.config import Settings
from roomtape.transcripts.stt.base import SpeechToText
from roomtape.transcripts.stt.openai_compat import OpenAITranscriptions
from roomtape.transcripts.stt.sphinx import PocketSphinx

_embedded: PocketSphinx | None = None
_embedded_lock = threading.Lock()


def embedded() -> PocketSphinx:
    """The process's PocketSphinx backend, created on first use and kept."""
    global _embedded
    with _embedded_lock:
        if _embedded is None:
            _embedded = PocketSphinx()
        return _embedded


def stt_backend(settings: Settings) -> SpeechToText:
    """A backend for one job; the caller closes it (``aclose``)."""
    if settings.stt_url:
        return OpenAITranscriptions(
            settings.stt_url, settings.stt_model, settings.stt_api_key, timeout_secs=settings.stt_timeout_secs
        )
    return embedded()
