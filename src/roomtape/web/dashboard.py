"""What the dashboard pages show, computed without I/O: sizes, durations, times, and the track timeline.

The HTTP side (sign-in, pages, the API proxy) is ``roomtape.api.routers.dashboard``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from roomtape.recording.manifest import TrackManifest

__all__ = [
    "AUDIO_EXTENSIONS",
    "FINAL_STATUSES",
    "MEETING_TITLE_MAX",
    "TEMPLATES_DIR",
    "TimelineRow",
    "TimelineSegment",
    "clock",
    "duration",
    "human_size",
    "local_time",
    "meeting_title_problem",
    "timeline",
    "timeline_json",
]

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates" / "dashboard"
"""The dashboard's Jinja2 templates."""

FINAL_STATUSES = frozenset({"UPLOADED", "ERRORED"})
"""Recording statuses that no longer change by themselves (the pages stop polling them)."""

AUDIO_EXTENSIONS = frozenset({"ogg", "mp3", "m4a", "aac", "opus", "wav"})
"""Composite file extensions played with ``<audio>`` rather than ``<video>``."""


MEETING_TITLE_MAX = 1024
"""Longest meeting title the API stores."""


def meeting_title_problem(title: str) -> str | None:
    """Why a title typed into the "New meeting" form cannot be used (a message for people), or None."""
    if not title.strip():
        return "Give the meeting a title: it cannot be empty or only spaces. Nothing was created."
    if len(title) > MEETING_TITLE_MAX:
        return f"A title has at most {MEETING_TITLE_MAX} characters; this one has {len(title)}. Nothing was created."
    if "\x00" in title:
        return "A title cannot contain NUL characters. Nothing was created."
    return None


def human_size(size: float | None) -> str:
    """``1.2 MB``-style size (decimal units), or an em dash when unknown."""
    if size is None:
        return "—"
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # pragma: no cover - the loop returns at GB


def duration(seconds: float | None) -> str:
    """``h:mm:ss`` or ``m:ss``, or an em dash when unknown."""
    if seconds is None:
        return "—"
    total = max(0, round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def clock(seconds: float) -> str:
    """``mm:ss.mmm`` (minutes may exceed 59), the precise time shown on hover."""
    ms = max(0, round(seconds * 1000))
    m, rest = divmod(ms, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{m:02d}:{s:02d}.{ms:03d}"


def local_time(value: datetime | str | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SS UTC``, or an em dash."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass
class TimelineSegment:
    """One segment file of a participant's track, on the recording's clock (seconds from its first frame)."""

    kind: str
    index: int
    start: float
    end: float
    file: str


@dataclass
class TimelineRow:
    """One participant's row of the timeline."""

    participant_id: str
    name: str
    segments: list[TimelineSegment] = field(default_factory=list)


def timeline(manifests: Iterable[TrackManifest], origin_epoch: float, names: Mapping[str, str]) -> list[TimelineRow]:
    """The participants' track segments on the recording's clock, one row per participant, by first segment.

    Args:
        manifests: The timing manifests of the recording's tracks.
        origin_epoch: The recording's first frame, Unix seconds (0 on its clock).
        names: Display names by participant id (the id is shown otherwise).
    """
    rows: dict[str, TimelineRow] = {}
    for manifest in manifests:
        row = rows.setdefault(
            manifest.participant_id,
            TimelineRow(manifest.participant_id, names.get(manifest.participant_id) or manifest.participant_id),
        )
        for seg in manifest.segments:
            row.segments.append(
                TimelineSegment(
                    kind=manifest.kind,
                    index=seg.index,
                    start=round(seg.start_epoch_ms / 1000 - origin_epoch, 3),
                    end=round(seg.end_epoch_ms / 1000 - origin_epoch, 3),
                    file=seg.file,
                )
            )
    for row in rows.values():
        row.segments.sort(key=lambda s: (s.start, s.kind, s.index))
    return sorted(rows.values(), key=lambda r: (min((s.start for s in r.segments), default=0.0), r.name))


def timeline_json(rows: Iterable[TimelineRow]) -> list[dict[str, Any]]:
    """The timeline as the page's script reads it."""
    return [
        {
            "participant_id": r.participant_id,
            "name": r.name,
            "segments": [
                {"kind": s.kind, "index": s.index, "start": s.start, "end": s.end, "file": s.file} for s in r.segments
            ],
        }
        for r in rows
    ]
