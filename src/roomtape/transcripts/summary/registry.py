"""Choosing the summarizer from the settings.

An OpenAI-compatible server when ``ROOMTAPE_SUMMARY_URL`` is set, else the embedded extractive one.
"""

from __future__ import annotations

from roomtape.config import Settings
from roomtape.transcripts.summary.base import Summarizer
from roomtape.transcripts.summary.extractive import ExtractiveSummarizer
from roomtape.transcripts.summary.openai_compat import OpenAIChatSummarizer

__all__ = ["summary_backend"]


def summary_backend(settings: Settings) -> Summarizer:
    """A summarizer for one job; the caller closes it (``aclose``)."""
    if settings.summary_url:
        return OpenAIChatSummarizer(
            settings.summary_url,
            settings.summary_model,
            settings.summary_api_key,
            timeout_secs=settings.summary_timeout_secs,
        )
    return ExtractiveSummarizer()
