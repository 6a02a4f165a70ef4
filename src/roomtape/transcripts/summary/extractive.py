"""The embedded summarizer: extractive, offline, no model. It picks sentences; it does not write new ones.

Key points are the transcript's sentences whose content words (not in :data:`STOPWORDS`) recur most across
the whole session, scored per word so long sentences do not win by length; up to :data:`MAX_KEY_POINTS`,
in the order they were said, each with its speaker and session time. Action items are the sentences that
commit someone or the group to doing something: "I will…", "I'll…", "we need to…", "let's…", "TODO",
"action item". The text's first line says what made it, so nobody mistakes it for a language model's prose.

Pure CPU work on small inputs (milliseconds for an hour of talk); the job runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from roomtape.transcripts.summary.base import Summary, SummaryError, TranscriptLine, clock

__all__ = ["ACTION_PATTERN", "HEADER", "MAX_KEY_POINTS", "STOPWORDS", "ExtractiveSummarizer", "summarize_lines"]

HEADER: Final = (
    "Extractive summary by roomtape's built-in offline summarizer: sentences picked from the transcript, "
    "not written by a language model."
)

MAX_KEY_POINTS: Final = 5

ACTION_PATTERN: Final = re.compile(
    # Contractions need their apostrophe (straight or typographic): "well", "ill" and "lets" are other words.
    r"\b(i\s+will|i['\u2019]ll|i\s+am\s+going\s+to|i['\u2019]m\s+going\s+to|we\s+will|we['\u2019]ll|we\s+need\s+to|"
    r"we\s+should|let['\u2019]s|let\s+us|todo|to-do|action\s+item|follow\s+up)\b",
    re.IGNORECASE,
)
"""A sentence that commits someone to something."""

STOPWORDS: Final = frozenset(
    """a about above after again all also am an and any are as at be because been before being below between
    both but by can could did do does doing down during each few for from further had has have having he her
    here hers him his how i i'm i'll if in into is it it's its just let let's me more most my no nor not now of
    off oh ok okay on once only or other our ours out over own right same she should so some such than that
    that's the their them then there these they this those through to too under until up very was we we'll
    we're were what when where which while who whom why will with would yeah yes you you're your yours um uh
    like well really thing things going get got think know""".split()
)

_SENTENCE: Final = re.compile(r"[^.!?]+[.!?]*")
_WORD: Final = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True, slots=True)
class _Sentence:
    speaker: str
    start: float
    text: str
    order: int


def _sentences(lines: Sequence[TranscriptLine]) -> list[_Sentence]:
    out: list[_Sentence] = []
    for line in lines:
        for part in _SENTENCE.findall(line.text.replace("\n", " ")):
            text = " ".join(part.split())
            if len(_WORD.findall(text.lower())) >= 2 or ACTION_PATTERN.search(text):
                out.append(_Sentence(line.speaker, line.start, text, len(out)))
    return out


def _content_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS and len(w) > 1]


def summarize_lines(lines: Sequence[TranscriptLine], max_key_points: int = MAX_KEY_POINTS) -> str:
    """The extractive summary of a transcript, as text.

    Raises:
        SummaryError: (not retryable) if the transcript has no sentence to pick.
    """
    sentences = _sentences(sorted(lines, key=lambda line: line.start))
    if not sentences:
        raise SummaryError("the transcript has nothing to summarize", retryable=False)
    frequency = Counter(w for s in sentences for w in _content_words(s.text))

    def score(s: _Sentence) -> float:
        words = _content_words(s.text)
        return sum(frequency[w] for w in words) / math.sqrt(len(words)) if words else 0.0

    actions = [s for s in sentences if ACTION_PATTERN.search(s.text)]
    candidates = [s for s in sentences if s not in actions and score(s) > 0] or [
        s for s in sentences if s not in actions
    ]
    ranked = sorted(candidates, key=lambda s: (-score(s), s.order))[:max_key_points]
    key_points = sorted(ranked, key=lambda s: s.order)
    speakers = list(dict.fromkeys(s.speaker for s in sentences))
    span = sentences[-1].start
    out = [HEADER, "", f"Speakers: {', '.join(speakers)} · {len(lines)} transcript lines up to {clock(span)}", ""]
    out.append("Key points:")
    out += [f"- {clock(s.start)} {s.speaker}: {s.text}" for s in key_points] or ["- (none)"]
    out.append("")
    out.append("Action items:")
    out += [f"- {clock(s.start)} {s.speaker}: {s.text}" for s in actions] or ["- (none found)"]
    return "\n".join(out)


class ExtractiveSummarizer:
    """The offline :class:`~roomtape.transcripts.summary.base.Summarizer` (see the module docstring)."""

    name = "extractive"

    async def summarize(self, lines: Sequence[TranscriptLine]) -> Summary:
        """Pick key sentences and action items, in a worker thread."""
        text = await asyncio.to_thread(summarize_lines, list(lines))
        return Summary(text=text, backend=self.name)

    async def aclose(self) -> None:
        """Nothing to release."""
