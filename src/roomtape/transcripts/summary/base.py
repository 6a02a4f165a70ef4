"""The summary seam: what a summarizer reads (a session's transcript lines) and what it writes (plain text).

Two backends satisfy :class:`Summarizer`: the embedded
:class:`~roomtape.transcripts.summary.extractive.ExtractiveSummarizer` (offline, picks sentences; it says so
at the top of what it writes) and the HTTP
:class:`~roomtape.transcripts.summary.openai_compat.OpenAIChatSummarizer` (any OpenAI-compatible
``/v1/chat/completions`` server). Which one runs is configuration (:mod:`~roomtape.transcripts.summary.registry`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from roomtape.errors import RoomtapeError

__all__ = ["Summarizer", "Summary", "SummaryError", "TranscriptLine", "clock"]


class SummaryError(RoomtapeError):
    """Summarizing failed.

    ``retryable`` is true when the backend was unreachable, overloaded or answered something unreadable, false
    when the request cannot succeed as it is (refused credentials, an unknown model, nothing to summarize).
    """


@dataclass(frozen=True, slots=True)
class TranscriptLine:
    """One thing said in the session, as the summarizer sees it."""

    speaker: str
    """Display name (or id) of who said it."""
    start: float
    """Seconds on the session clock."""
    text: str
    """What was said."""


@dataclass(frozen=True, slots=True)
class Summary:
    """What a summarizer wrote."""

    text: str
    """Plain text (a few lines; never markup)."""
    backend: str
    """Which summarizer wrote it, e.g. ``extractive`` or ``openai-compatible/gpt-4o-mini``."""


def clock(seconds: float) -> str:
    """``[mm:ss]`` (or ``[h:mm:ss]``) for a time on the session clock."""
    whole = max(0, int(seconds))
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"[{h}:{m:02d}:{s:02d}]" if h else f"[{m:02d}:{s:02d}]"


class Summarizer(Protocol):
    """A summary backend."""

    @property
    def name(self) -> str:
        """Backend (and model), stored with the summary."""
        ...

    async def summarize(self, lines: Sequence[TranscriptLine]) -> Summary:
        """Summarize a transcript (lines in time order; at least one).

        Raises:
            SummaryError: The backend failed (``retryable`` says whether to try again).
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
