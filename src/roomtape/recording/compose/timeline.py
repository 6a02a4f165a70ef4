import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from roomtape.errors import InvalidInput
from roomtape.recording.manifest import MANIFEST_NAME, TrackKind, load

__all__ = ["OPEN_END_MS", "Participant", "Segment", "Timeline", "discover", "recorded_spans"]

log = logging.getLogger(__name__)

_KINDS: tuple[TrackKind, ...] = ("audio", "video", "screen_audio", "screen_video")

OPEN_END_MS = 1 << 52
"""``end_ms`` of a segment the recorder still writes (live rendering): it lasts until its manifest says otherwise."""


@dataclass(frozen=True, slots=True)
class Segment:
    """One segment file placed on the wall clock."""

    path: Path
    """The segment file."""
    kind: TrackKind
    """Which of the participant's tracks it belongs to."""
    start_ms: int
    """Wall-clock time of its first frame (its pts 0), ms since the Unix epoch."""
    end_ms: int
    """Wall-clock time of the end of its last frame."""
    gaps: tuple[tuple[int, int], ...] = ()
    """Spans without media inside it, as wall-clock (start_ms, end_ms)."""
    complete: bool = True
    """False while the recorder still writes it (only from ``discover(..., live=True)``); its ``end_ms`` is
    then `OPEN_END_MS` and its file grows."""


@dataclass(slots=True)
class Participant:
    """One participant's segments of every kind, sorted by start."""

    participant_id: str
    """The participant."""
    segments: dict[TrackKind, list[Segment]]
    """Segments by kind."""

    @property
    def first_ms(self) -> int:
        """Wall-clock start of the participant's earliest media."""
        return min(s.start_ms for segs in self.segments.values() for s in segs)

    def intervals(self, kinds: Iterable[TrackKind] = _KINDS, grace_ms: int = 0) -> list[tuple[int, int]]:
        """Wall-clock spans where the participant has media of the given kinds.

        Args:
            kinds: Which tracks count.
            grace_ms: Spans closer than this are merged.

        Returns:
            Sorted, disjoint (start_ms, end_ms) spans.
        """
        spans = sorted((s.start_ms, s.end_ms) for kind in kinds for s in self.segments.get(kind, []))
        merged: list[tuple[int, int]] = []
        for start, end in spans:
            if merged and start <= merged[-1][1] + grace_ms:
                merged[-1] = (merged[-1][0], max(merged[-1][1], end))
            else:
                merged.append((start, end))
        return merged


def discover(base_dir: Path, session_ids: Sequence[str] = (), *, live: bool = False) -> list[Participant]:
    """Find every participant track under a recording's base directory.

    Reads the manifests at ``{base_dir}/{session_id}/{participant_id}/{kind}/manifest.json``. A
    participant who appears in several sessions is one participant. Segments whose file is missing are
    skipped with a warning.

    Args:
        base_dir: The recording's root directory.
        session_ids: Sessions to include; empty means all.
        live: The recorder is still writing: a segment its manifest calls ``recording`` is open-ended
            (``complete=False``, ``end_ms=OPEN_END_MS``). Otherwise such a segment (a crash left it) ends where
            its manifest says.

    Returns:
        Participants in order of first appearance (ties by id).
    """
    by_id: dict[str, Participant] = {}
    for manifest_path in sorted(base_dir.glob(f"*/*/*/{MANIFEST_NAME}")):
        manifest = load(manifest_path)
        if session_ids and manifest.session_id not in session_ids:
            continue
        directory = manifest_path.parent
        participant = by_id.setdefault(manifest.participant_id, Participant(manifest.participant_id, {}))
        segments = participant.segments.setdefault(manifest.kind, [])
        for entry in manifest.segments:
            path = directory / entry.file
            if not path.exists():
                if not live:
                    log.warning("%s: segment file missing, skipped", path)
                continue
            gaps = tuple(
                (entry.start_epoch_ms + g.offset_ms, entry.start_epoch_ms + g.offset_ms + g.duration_ms)
                for g in entry.gaps
            )
            open_ended = live and entry.status == "recording"
            end_ms = OPEN_END_MS if open_ended else entry.end_epoch_ms
            segments.append(Segment(path, manifest.kind, entry.start_epoch_ms, end_ms, gaps, complete=not open_ended))
        segments.sort(key=lambda s: s.start_ms)
    found = [p for p in by_id.values() if any(p.segments.values())]
    return sorted(found, key=lambda p: (p.first_ms, p.participant_id))


def recorded_spans(start_ms: int, pauses: Sequence[Sequence[int | None]], end_ms: int) -> list[tuple[int, int]]:
    """The recorded (start, end) epoch-ms spans from ``start_ms`` to ``end_ms`` minus the pauses.

    Args:
        start_ms: When the recording started (its first frame).
        pauses: ``[pause_start_ms, resume_ms | None]`` in order; an open pause runs to ``end_ms``.
        end_ms: When it stopped (or, while it runs, how far to look).

    Returns:
        Non-empty spans in order (none if ``end_ms <= start_ms``).
    """
    spans: list[tuple[int, int]] = []
    cursor = start_ms
    for pause in pauses:
        p0 = max(int(pause[0] or 0), cursor)
        p1 = int(pause[1]) if pause[1] is not None else end_ms
        if p0 >= end_ms:
            break
        if p0 > cursor:
            spans.append((cursor, p0))
        cursor = max(cursor, min(p1, end_ms))
    if end_ms > cursor:
        spans.append((cursor, end_ms))
    return spans


class Timeline:
    """Maps output time onto the wall clock across the recorded spans (paused spans cut out).

    Output time runs continuously from 0; each span contributes its length in order. Internally
    everything is counted in samples of the 48 kHz mix clock, which holds milliseconds exactly.

    Args:
        spans: Recorded (start_epoch_ms, end_epoch_ms) spans, in order, not overlapping.
        rate: Samples per second of the mix clock.

    Raises:
        InvalidInput: If there is no span, or spans are empty, reversed or overlap.
    """

    def __init__(self, spans: Sequence[tuple[int, int]], rate: int = 48000) -> None:
        self.rate = rate
        self._per_ms = rate // 1000
        self._set(spans)

    def _set(self, spans: Sequence[tuple[int, int]]) -> None:
        if not spans:
            raise InvalidInput("no recorded span to render")
        previous_end = None
        for start, end in spans:
            if end <= start:
                raise InvalidInput(f"span ({start}, {end}) is empty or reversed")
            if previous_end is not None and start < previous_end:
                raise InvalidInput("spans overlap or are out of order")
            previous_end = end
        self.spans = [(int(s), int(e)) for s, e in spans]
        self.origin_ms = self.spans[0][0]
        # (output start sample, wall start sample, length in samples) per span
        self._pieces: list[tuple[int, int, int]] = []
        out = 0
        for start, end in self.spans:
            length = (end - start) * self._per_ms
            self._pieces.append((out, (start - self.origin_ms) * self._per_ms, length))
            out += length
        self.total_samples = out

    def extend(self, spans: Sequence[tuple[int, int]]) -> None:
        """Grow the timeline as a live recording goes on (the render reads it as it grows).

        What is already on it stays where it is: ``spans`` must be the current spans with the last one
        possibly longer, and possibly more spans after it.

        Args:
            spans: The recorded spans so far.

        Raises:
            ValueError: If ``spans`` would move output time already on the timeline (a pause that
                starts before the current end).
        """
        new = [(int(s), int(e)) for s, e in spans]
        old = self.spans
        if (
            len(new) < len(old)
            or new[: len(old) - 1] != old[:-1]
            or new[len(old) - 1][0] != old[-1][0]
            or new[len(old) - 1][1] < old[-1][1]
        ):
            raise ValueError(f"spans {new} do not extend {old}")
        if new != old:
            self._set(new)

    @property
    def duration_seconds(self) -> float:
        """Output duration."""
        return self.total_samples / self.rate

    def wall_sample(self, epoch_ms: float) -> int:
        """A wall-clock instant as a sample index of the mix clock (0 = start of the first span)."""
        return round((epoch_ms - self.origin_ms) * self._per_ms)

    def wall_ms(self, wall_sample: float) -> float:
        """A mix-clock sample index as epoch ms."""
        return self.origin_ms + wall_sample / self._per_ms

    def to_wall(self, out_sample: int) -> int:
        """The wall-clock sample shown at an output sample (the end of the output maps to the last span's end)."""
        for out_start, wall_start, length in self._pieces:
            if out_sample < out_start + length:
                return wall_start + max(0, out_sample - out_start)
        out_start, wall_start, length = self._pieces[-1]
        return wall_start + length

    def pieces(self, out_start: int, out_end: int) -> list[tuple[int, int]]:
        """Split an output range into wall-clock ranges that are each continuous.

        Args:
            out_start: First output sample.
            out_end: One past the last output sample.

        Returns:
            (wall start sample, length) per continuous piece, in output order.
        """
        result: list[tuple[int, int]] = []
        for piece_out, piece_wall, length in self._pieces:
            lo, hi = max(out_start, piece_out), min(out_end, piece_out + length)
            if lo < hi:
                result.append((piece_wall + lo - piece_out, hi - lo))
        return result

    def overlaps(self, start_ms: int, end_ms: int) -> bool:
        """Whether a wall-clock range meets any span."""
        return any(start_ms < e and end_ms > s for s, e in self.spans)
