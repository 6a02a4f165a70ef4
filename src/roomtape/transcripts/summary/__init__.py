"""Summaries of session transcripts behind one seam.

An offline extractive default and an OpenAI-compatible chat-completions backend (see
:mod:`roomtape.transcripts.summary.base`).
"""

from roomtape.transcripts.summary.base import Summarizer, Summary, SummaryError, TranscriptLine
from roomtape.transcripts.summary.extractive import ExtractiveSummarizer
from roomtape.transcripts.summary.openai_compat import OpenAIChatSummarizer
from roomtape.transcripts.summary.registry import summary_backend

__all__ = [
    "ExtractiveSummarizer",
    "OpenAIChatSummarizer",
    "Summarizer",
    "Summary",
    "SummaryError",
    "TranscriptLine",
    "summary_backend",
]
