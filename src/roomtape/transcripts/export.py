"""Transcript exports: LiveKit's ``ChatContext.to_dict()`` JSON, roomtape's richer JSON, WebVTT and SRT.

Times in the rich JSON, WebVTT and SRT are on the clock the items carry: the session's (0 = session start)
or, for a recording's transcript, the recording's (0 = its first frame). An item with no start is placed at
its creation time; one with no end lasts as long as it takes to read (at least a second).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from typing import Any, Literal

from roomtape.transcripts.model import TranscriptItem

ExportFormat = Literal["json", "livekit", "vtt", "srt", "csv"]
FORMATS: tuple[ExportFormat, ...] = ("json", "livekit", "vtt", "srt", "csv")

MEDIA_TYPES: dict[ExportFormat, str] = {
    "json": "application/json",
    "livekit": "application/json",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}

VOICES = {"user": "User", "assistant": "Agent", "system": "System", "developer": "Developer"}
"""Voice names of the roles, for items that do not name their speaker."""

_READ_CHARS_PER_SEC = 16.0
_MIN_CUE_SECS = 1.0
_MAX_GUESSED_SECS = 10.0


def shown_text(item: TranscriptItem) -> str:
    """What was heard: the spoken part of an interrupted item when known, else the whole text."""
    if item.interrupted and item.spoken_text is not None and item.spoken_text.strip():
        return item.spoken_text
    return item.text


def cue_span(item: TranscriptItem, origin_epoch: float) -> tuple[float, float]:
    """Start and end of the item's cue in seconds on the items' clock (``origin_epoch`` = its zero).

    Never negative, and the end is at least a millisecond after the start.
    """
    start = item.start if item.start is not None else item.created_at - origin_epoch
    if item.end is not None and item.end > start:
        end = item.end
    else:
        guess = min(_MAX_GUESSED_SECS, max(_MIN_CUE_SECS, len(shown_text(item)) / _READ_CHARS_PER_SEC))
        end = start + guess
    start = max(0.0, start)
    return start, max(end, start + 0.001)


def _millis(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def timestamp(seconds: float, decimal: str = ".") -> str:
    """``HH:MM:SS.mmm`` (WebVTT) or, with ``decimal=","``, ``HH:MM:SS,mmm`` (SRT)."""
    ms = _millis(seconds)
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{millis:03d}"


def _lines(text: str) -> list[str]:
    """Text lines with no blank one (a blank line ends a cue in both formats) and no NUL.

    Splits at every line boundary Python knows (CR, LF, and also VT, FF, NEL, U+2028...), not only WebVTT's
    CR/LF, so that parsers splitting more eagerly than the spec still see the same cues.
    """
    return [line for line in text.replace("\x00", "\ufffd").splitlines() if line.strip()]


def _vtt_escape(text: str) -> str:
    """Escape WebVTT cue text: ``&``, ``<`` and ``>`` become character references (so ``-->`` cannot appear)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cues(items: Sequence[TranscriptItem], origin_epoch: float) -> list[tuple[int, int, TranscriptItem, list[str]]]:
    """(start ms, end ms, item, lines) of every item with text, in time order; end > start after rounding."""
    cues = []
    for item in items:
        lines = _lines(shown_text(item))
        if not lines:
            continue
        start, end = cue_span(item, origin_epoch)
        start_ms = _millis(start)
        cues.append((start_ms, max(_millis(end), start_ms + 1), item, lines))
    cues.sort(key=lambda c: (c[0], c[1]))
    return cues


def voice(item: TranscriptItem) -> str:
    """The voice name of the item's speaker, as the JSON export's ``speaker_id`` names it.

    That is a participant's name for meeting speech, the label an agent's speech-to-text gave; items without
    one get their role's name (``User``, ``Agent``). Whitespace runs (line breaks included) become one space:
    the name sits on the cue's first line.
    """
    name = " ".join((item.speaker_id or "").replace("\x00", "\ufffd").split())
    return name or VOICES.get(item.role, item.role.capitalize())


def to_webvtt(items: Sequence[TranscriptItem], origin_epoch: float = 0.0) -> str:
    """A WebVTT file: one cue per item, numbered from 1, text in a voice span of its speaker (``<v Alice>``)."""
    out = ["WEBVTT", ""]
    for n, (start, end, item, lines) in enumerate(_cues(items, origin_epoch), start=1):
        name = _vtt_escape(voice(item))
        body = [f"<v {name}>{_vtt_escape(lines[0])}", *(_vtt_escape(line) for line in lines[1:])]
        out += [str(n), f"{timestamp(start / 1000)} --> {timestamp(end / 1000)}", *body, ""]
    return "\n".join(out) + "\n" if len(out) > 2 else "WEBVTT\n"


def to_srt(items: Sequence[TranscriptItem], origin_epoch: float = 0.0) -> str:
    """An SRT file: one numbered cue per item, the speaker as an ``Alice: `` prefix (SRT has no voices)."""
    out: list[str] = []
    for n, (start, end, item, lines) in enumerate(_cues(items, origin_epoch), start=1):
        body = [f"{voice(item)}: {lines[0]}", *lines[1:]]
        out += [str(n), f"{timestamp(start / 1000, ',')} --> {timestamp(end / 1000, ',')}", *body, ""]
    return "\n".join(out)


def to_csv(items: Sequence[TranscriptItem], origin_epoch: float = 0.0) -> str:
    """CSV (RealtimeKit's default transcript format): one row per item, times in seconds."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["id", "start", "end", "role", "speaker", "participant_id", "text", "interrupted"])
    for item in items:
        start, end = cue_span(item, origin_epoch)
        speaker = voice(item)
        writer.writerow(
            [
                item.id,
                f"{start:.3f}",
                f"{end:.3f}",
                item.role,
                speaker,
                item.participant_id or "",
                shown_text(item),
                str(item.interrupted).lower(),
            ]
        )
    return buf.getvalue()


def livekit_item(item: TranscriptItem) -> dict[str, Any]:
    """One item as LiveKit's ``ChatMessage.model_dump(mode="json", exclude_none=True)`` shapes it."""
    metrics: dict[str, float] = {}
    if item.start_epoch is not None:
        metrics["started_speaking_at"] = item.start_epoch
    if item.end_epoch is not None:
        metrics["stopped_speaking_at"] = item.end_epoch
    out: dict[str, Any] = {
        "id": item.id,
        "type": "message",
        "role": item.role,
        "content": list(item.content),
        "interrupted": item.interrupted,
    }
    if item.confidence is not None:
        out["transcript_confidence"] = item.confidence
    out.update({"extra": dict(item.extra), "metrics": metrics, "created_at": item.created_at})
    return out


def to_livekit(items: Sequence[TranscriptItem]) -> dict[str, Any]:
    """``{"items": [...]}`` as ``ChatContext.to_dict(exclude_timestamp=False)`` returns it."""
    return {"items": [livekit_item(i) for i in items]}


def rich_item(item: TranscriptItem) -> dict[str, Any]:
    """One item with everything roomtape knows about it."""
    return {
        **livekit_item(item),
        "kind": item.kind,
        "text": item.text,
        "spoken_text": item.spoken_text,
        "session_id": item.session_id,
        "participant_id": item.participant_id,
        "speaker_id": item.speaker_id,
        "channel": item.channel,
        "start": item.start,
        "end": item.end,
        "start_epoch": item.start_epoch,
        "end_epoch": item.end_epoch,
        "words": [{"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence} for w in item.words],
        "language": item.language,
        "is_final": item.is_final,
        "source": item.source,
    }


def to_json(
    items: Sequence[TranscriptItem],
    *,
    session_id: str,
    origin_epoch: float,
    recording_id: str | None = None,
    transcription: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Roomtape's transcript: items with times on the session's clock, or the recording's if ``recording_id``.

    ``transcription``: the live transcription's progress (session exports of meetings transcribed live), kept
    under that key; left out when ``None``.
    """
    out: dict[str, Any] = {
        "session_id": session_id,
        "recording_id": recording_id,
        "clock": "recording" if recording_id else "session",
        "origin_epoch": origin_epoch,
        "items": [rich_item(i) for i in items],
    }
    if transcription is not None:
        out["transcription"] = transcription
    return out
