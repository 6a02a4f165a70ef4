"""Where the renderer's input comes from: closed track files (after the meeting) or files still being written.

The renderer (`roomtape.recording.composer.Composer`) reads per-track frames through a `Feed`: the
participants and their segments, the output timeline (recorded spans, pauses cut out), how a segment's file is
opened, and how far it may render. `FileFeed` is everything at once, from the manifests of a stopped recording.
`LiveFeed` follows a recording while it runs: it re-reads the manifests as the recorder opens and closes segments,
reads a segment the recorder still writes through a `TailReader` (WebM clusters reach the disk within half a
second, see ``recording.writer.MUXER_OPTIONS``), and lets the render go no further than ``lag`` behind the wall
clock, so every frame up to there is on disk. Spans and pauses come from a small control file the server
rewrites (`write_control`) on start, pause, resume and stop; the stop writes the final spans, after which the
feed lets the render run to their end as fast as it can (catching up from the now closed files if it fell behind).
"""

import json
import logging
import os
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final, Protocol

from roomtape.recording.compose.options import ComposeCancelled
from roomtape.recording.compose.timeline import Participant, Segment, Timeline, discover, recorded_spans
from roomtape.recording.compose.video import open_path
from roomtape.recording.manifest import MANIFEST_NAME, load

log = logging.getLogger(__name__)

__all__ = [
    "CONTROL_NAME",
    "Feed",
    "FileFeed",
    "LiveControl",
    "LiveFeed",
    "TailReader",
    "read_control",
    "write_control",
]

CONTROL_NAME: Final = ".live-control.json"
"""File name of the live render's control file, in the recording's local directory."""

_POLL: Final = 0.05  # seconds between looks at a growing file or the control file
_REDISCOVER: Final = 0.5  # seconds of wall time between re-reads of the manifests
_NEW_SEGMENT_MS: Final = 500  # a segment is in its manifest this long after its first frame (the writer queue)
_DEAD_WRITER: Final = 5.0  # after the stop, a file that has not grown for this long is taken as ended


class Feed(Protocol):
    """The renderer's input."""

    live: bool
    """Whether the input is still growing (some options, e.g. Opus packet copy, need all of it up front)."""
    timeline: Timeline
    """The output timeline; a live feed extends it in place."""

    def participants(self) -> list[Participant]:
        """Everyone with media so far, in order of first appearance."""
        ...

    def refresh(self) -> bool:
        """Look for new segments (and ends of open ones); True if `participants` changed."""
        ...

    def wait_for(self, out_sample: int) -> None:
        """Block until the timeline reaches ``out_sample`` (or is final and ends before it)."""
        ...

    def open(self, segment: Segment) -> "str | IO[bytes]":
        """What ``av.open`` reads the segment from."""
        ...


class FileFeed:
    """A stopped recording's track files and spans, all known up front.

    Args:
        base_dir: The recording's root: ``{session_id}/{participant_id}/{kind}/`` folders with manifests.
        spans: The recorded (start_epoch_ms, end_epoch_ms) spans.
        session_ids: Sessions to include; empty means all.
    """

    live = False

    def __init__(self, base_dir: Path, spans: Sequence[tuple[int, int]], session_ids: Sequence[str] = ()) -> None:
        self.timeline = Timeline(spans)
        self._base_dir = base_dir
        self._session_ids = tuple(session_ids)
        self._participants: list[Participant] | None = None

    def participants(self) -> list[Participant]:
        """See `Feed.participants`."""
        if self._participants is None:
            self._participants = discover(self._base_dir, self._session_ids)
        return self._participants

    def refresh(self) -> bool:
        """Nothing changes."""
        return False

    def wait_for(self, out_sample: int) -> None:
        """Everything is there."""

    def open(self, segment: Segment) -> str:
        """The segment's path."""
        return open_path(segment)


@dataclass(slots=True)
class LiveControl:
    """What the server tells a live render: when the recording started, its pauses, and, at the stop, its spans."""

    started_ms: int
    """Epoch ms of the recording's first frame (``started_time``)."""
    pauses: list[list[int | None]] = field(default_factory=list)
    """``[pause_ms, resume_ms | None]`` as in the recording's ``config["pauses"]``."""
    final_spans: list[list[int]] | None = None
    """Set at the stop: the recorded spans (the recording's ``config["spans"]``); the render ends with them."""


def _keep_rendered(final: list[tuple[int, int]], current: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """The final spans, their last one stretched to what the live timeline already holds, if it ends earlier.

    The live horizon follows the wall clock (``lag`` behind it) until the final spans arrive; a stop whose
    final spans come later than ``lag`` after the recording's stop time (a loaded machine) leaves the timeline
    past the stop. What is on the timeline is rendered already and stays: the composite then runs that much
    past the stop (a held picture, silence) instead of the live render failing and the whole composite being
    rendered again from the files.
    """
    if not current or len(final) != len(current) or final[:-1] != list(current[:-1]):
        return final
    (start, end), (cur_start, cur_end) = final[-1], current[-1]
    if start != cur_start or end >= cur_end:
        return final
    log.warning("live render: the stop's spans end %d ms before what was already rendered; kept", cur_end - end)
    return [*final[:-1], (start, cur_end)]


def write_control(directory: Path, control: LiveControl) -> Path:
    """Write the control file atomically (the render reads it from another process)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".live-control-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(
                {"started_ms": control.started_ms, "pauses": control.pauses, "final_spans": control.final_spans}, file
            )
        target = directory / CONTROL_NAME
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_control(directory: Path) -> LiveControl | None:
    """The control file, or None if there is none yet."""
    try:
        data = json.loads((directory / CONTROL_NAME).read_text())
    except FileNotFoundError:
        return None
    return LiveControl(int(data["started_ms"]), list(data.get("pauses") or []), data.get("final_spans"))


class TailReader:
    """Reads a segment file the recorder is still writing, waiting at its end for more (``tail -f``).

    The end of the file is the end only once the segment's manifest entry says ``complete`` (the writer closed
    it), or, after the recording stopped, once it has not grown for a few seconds (a writer that died).

    Args:
        segment: The segment (``complete=False``).
        feed: The live feed (for the stop and cancellation).
    """

    def __init__(self, segment: Segment, feed: "LiveFeed") -> None:
        self._path = segment.path
        self._feed = feed
        self._file = segment.path.open("rb")
        self._complete = False
        self._grew = time.monotonic()
        self._checked = 0.0

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes, once there are any (b"" at the segment's real end)."""
        while True:
            data = self._file.read(size)
            if data or self._complete:
                if data:
                    self._grew = time.monotonic()
                return data
            if self._feed.cancelled:
                raise ComposeCancelled("composite render cancelled")
            now = time.monotonic()
            if now - self._checked >= _POLL * 4:
                self._checked = now
                self._complete = self._is_complete() or (self._feed.final and now - self._grew > _DEAD_WRITER)
                if self._complete:
                    continue  # read what was written before the manifest said so
            time.sleep(_POLL)

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def _is_complete(self) -> bool:
        try:
            manifest = load(self._path.parent / MANIFEST_NAME)
        except (OSError, ValueError):
            return False
        return any(s.file == self._path.name and s.status == "complete" for s in manifest.segments)


class LiveFeed:
    """A running recording's track files, followed as the recorder writes them (see the module docstring).

    Blocks in the constructor until the recording has started and ``lag`` has passed.

    Args:
        base_dir: The recording's root (manifests and segment files, and the control file).
        session_ids: Sessions to include; empty means all.
        lag: How far (seconds) behind the wall clock the render stays while the recording runs.
        presence_grace_ms: The render's `ComposeOptions.presence_grace_ms`: whether a participant's tile stays
            across a gap depends on a segment that starts up to this long later, so the render also stays that
            far behind the manifests it has read (and lays out exactly as the render from files does).
        cancel: Set to stop waiting (`ComposeCancelled` is raised).
    """

    live = True

    def __init__(
        self,
        base_dir: Path,
        session_ids: Sequence[str] = (),
        *,
        lag: float = 3.0,
        presence_grace_ms: int = 2000,
        cancel: threading.Event | None = None,
    ) -> None:
        self._base_dir = base_dir
        self._session_ids = tuple(session_ids)
        self._lag_ms = round(lag * 1000)
        self._grace_ms = presence_grace_ms
        self._cancel = cancel or threading.Event()
        self.final = False
        self.max_behind_seconds = 0.0
        """The most media (seconds) that was ready but not rendered yet while the recording ran (0: it kept up)."""
        self.behind_at_stop_seconds: float | None = None
        """How much media was left to render when the final spans arrived."""
        self._rendered = 0
        self._participants: list[Participant] = []
        self._seen: tuple[object, ...] = ()
        self._discovered = 0.0
        self._discovered_wall_ms = 0
        self._changed = False
        self._rediscover(force=True)
        spans = self._spans()
        while not spans:
            self._sleep()
            self._rediscover()
            spans = self._spans()
        self.timeline = Timeline(spans)

    @property
    def cancelled(self) -> bool:
        """Whether the render was cancelled."""
        return self._cancel.is_set()

    def participants(self) -> list[Participant]:
        """See `Feed.participants`."""
        return self._participants

    def refresh(self) -> bool:
        """Re-read the manifests (at most twice a second); True if anything changed since the last call."""
        self._rediscover()
        changed, self._changed = self._changed, False
        return changed

    def _rediscover(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._discovered < _REDISCOVER:
            return
        self._discovered = now
        self._discovered_wall_ms = round(time.time() * 1000)
        found = discover(self._base_dir, self._session_ids, live=not self.final)
        seen = tuple(
            (p.participant_id, kind, s.path, s.start_ms, s.end_ms)
            for p in found
            for kind, segs in p.segments.items()
            for s in segs
        )
        if seen != self._seen:
            self._seen, self._participants, self._changed = seen, found, True

    def wait_for(self, out_sample: int) -> None:
        """See `Feed.wait_for`; also keeps the catch-up figures."""
        timeline = self.timeline
        waited = False
        while True:
            if self._cancel.is_set():
                raise ComposeCancelled("composite render cancelled")
            was_final = self.final
            spans = self._spans()
            if spans and self.final and not was_final:
                spans = _keep_rendered(spans, timeline.spans)
            if spans:
                timeline.extend(spans)
            if self.final and not was_final:
                self.behind_at_stop_seconds = max(0, timeline.total_samples - self._rendered) / timeline.rate
                self._rediscover(force=True)  # every segment is closed now: their real ends
            if self.final or timeline.total_samples >= out_sample:
                break
            waited = True
            self._sleep()
            self._rediscover()
        if not self.final and not waited:  # media was there before the render asked: it is behind by that much
            behind = (timeline.total_samples - out_sample) / timeline.rate
            self.max_behind_seconds = max(self.max_behind_seconds, behind)
        self._rendered = out_sample

    def open(self, segment: Segment) -> "str | IO[bytes]":
        """A closed segment's path, or a `TailReader` on one the recorder still writes."""
        if segment.complete:
            return open_path(segment)
        return TailReader(segment, self)  # type: ignore[return-value]  # av.open reads any object with read()

    def _spans(self) -> list[tuple[int, int]]:
        control = read_control(self._base_dir)
        if control is None:
            return []
        if control.final_spans is not None:
            self.final = True
            return [(int(s), int(e)) for s, e in control.final_spans]
        horizon = min(
            round(time.time() * 1000) - self._lag_ms, self._discovered_wall_ms - self._grace_ms - _NEW_SEGMENT_MS
        )
        return recorded_spans(control.started_ms, control.pauses, horizon)

    def _sleep(self) -> None:
        if self._cancel.wait(_POLL * 2):
            raise ComposeCancelled("composite render cancelled")
