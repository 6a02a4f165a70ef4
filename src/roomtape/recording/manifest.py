import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from roomtape.recording.frame import CodecName
from roomtape.recording.rtptime import ClockMapping
from roomtape.recording.writer import Gap, SegmentStats

__all__ = [
    "MANIFEST_NAME",
    "ClockMappingEntry",
    "SegmentEntry",
    "TrackKind",
    "TrackManifest",
    "iso_ms",
    "load",
    "save",
    "segment_entry",
]

TrackKind = Literal["audio", "video", "screen_audio", "screen_video"]
"""The kinds of participant track, as VideoSDK names them."""

MANIFEST_NAME = "manifest.json"
"""File name of the timing sidecar, next to the segment files of one participant and kind."""


class ClockMappingEntry(BaseModel):
    """An RTP↔wall-clock pair from an RTCP sender report, as stored in the manifest."""

    model_config = ConfigDict(frozen=True)

    ntp_epoch_seconds: float
    """The sender's NTP time in seconds since the Unix epoch."""
    rtp_timestamp: int
    """The 32-bit RTP timestamp of that instant."""


class SegmentEntry(BaseModel):
    """One segment file and its timing."""

    model_config = ConfigDict(frozen=True)

    index: int
    """Position among the track's segments, from 1."""
    file: str
    """File name, relative to the manifest's directory."""
    status: Literal["recording", "complete"]
    """"recording" while the writer has it open (or if it crashed), "complete" once closed."""
    codec: CodecName
    """Codec of the media in the file."""
    clock_rate: int
    """RTP clock rate of the timestamps below."""
    start_epoch_ms: int
    """Wall-clock time of the first frame, ms since the Unix epoch."""
    end_epoch_ms: int
    """Wall-clock time of the end of the last frame, ms since the Unix epoch."""
    start: str
    """`start_epoch_ms` as ISO 8601 UTC, millisecond precision."""
    end: str
    """`end_epoch_ms` as ISO 8601 UTC, millisecond precision."""
    timing_source: Literal["rtcp_sr", "arrival"]
    """Whether start/end come from an RTCP sender report mapping or from arrival times."""
    first_rtp: int
    """Unwrapped RTP timestamp of the first frame (equal to its 32-bit value)."""
    last_rtp: int
    """Unwrapped RTP timestamp of the last frame."""
    clock_mapping: ClockMappingEntry | None = None
    """The sender-report mapping used for start/end, if one was known."""
    frames: int
    """Frames in the file."""
    keyframes: int
    """Keyframes in the file."""
    bytes: int
    """Payload bytes in the file."""
    dropped_before_keyframe: int = 0
    """Video frames dropped before the first keyframe."""
    dropped_late: int = 0
    """Frames dropped because they arrived behind the written timeline."""
    gaps: list[Gap] = []
    """Spans without media inside the file."""
    width: int = 0
    """Picture width (video)."""
    height: int = 0
    """Picture height (video)."""


class TrackManifest(BaseModel):
    """The timing sidecar of one participant's track of one kind in one session."""

    version: Literal[1] = 1
    """Format version."""
    session_id: str
    """The session the track belongs to."""
    participant_id: str
    """The participant who published it."""
    kind: TrackKind
    """Which of the participant's tracks."""
    segments: list[SegmentEntry] = []
    """Segment files in order."""


def iso_ms(epoch_ms: int) -> str:
    """Format ms since the Unix epoch as ISO 8601 UTC with millisecond precision and a ``Z``."""
    return datetime.fromtimestamp(epoch_ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_iso = iso_ms


def segment_entry(
    index: int,
    stats: SegmentStats,
    *,
    complete: bool,
    clock_mapping: ClockMapping | None = None,
) -> SegmentEntry:
    """Describe a written segment for the manifest.

    With a sender-report mapping, start and end are the sender's clock at the first and last
    RTP timestamps, which lines tracks up to the millisecond regardless of network delay;
    without one, they are arrival times.

    Args:
        index: The segment's index.
        stats: The writer's figures; at least one frame must have been written.
        complete: Whether the writer has closed the file.
        clock_mapping: The latest RTCP sender-report mapping for the track, if any.

    Returns:
        The manifest entry.

    Raises:
        ValueError: If no frame was written (there is no file to describe).
    """
    if (
        stats.path is None
        or stats.codec is None
        or stats.first_rtp is None
        or stats.last_rtp is None
        or stats.start_ms is None
        or stats.end_ms is None
    ):
        raise ValueError("segment has no frames")
    if clock_mapping is not None:
        start_ms = round(clock_mapping.wallclock(stats.first_rtp, stats.clock_rate) * 1000)
        end_ms = start_ms + round(stats.duration_seconds * 1000)
        mapping: ClockMappingEntry | None = ClockMappingEntry(
            ntp_epoch_seconds=clock_mapping.ntp_epoch_seconds, rtp_timestamp=clock_mapping.rtp_timestamp
        )
    else:
        start_ms, end_ms, mapping = stats.start_ms, stats.end_ms, None
    return SegmentEntry(
        index=index,
        file=stats.path.name,
        status="complete" if complete else "recording",
        codec=stats.codec,
        clock_rate=stats.clock_rate,
        start_epoch_ms=start_ms,
        end_epoch_ms=end_ms,
        start=_iso(start_ms),
        end=_iso(end_ms),
        timing_source="arrival" if mapping is None else "rtcp_sr",
        first_rtp=stats.first_rtp,
        last_rtp=stats.last_rtp,
        clock_mapping=mapping,
        frames=stats.frames,
        keyframes=stats.keyframes,
        bytes=stats.bytes,
        dropped_before_keyframe=stats.dropped_before_keyframe,
        dropped_late=stats.dropped_late,
        gaps=list(stats.gaps),
        width=stats.width,
        height=stats.height,
    )


def save(manifest: TrackManifest, directory: Path) -> Path:
    """Write the manifest into `directory`, atomically replacing any previous one.

    Readers (the composer, the dashboard, `repair`) never see a half-written manifest: it is
    written to a temporary file in the same directory, fsynced, then renamed over the old one.

    Args:
        manifest: What to write.
        directory: The participant/kind directory that holds the segment files.

    Returns:
        The manifest's path.
    """
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / MANIFEST_NAME
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".manifest-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(manifest.model_dump_json(indent=2).encode())
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def load(path: Path) -> TrackManifest:
    """Read a manifest.

    Args:
        path: The manifest file, or the directory that holds it.

    Returns:
        The parsed manifest.

    Raises:
        FileNotFoundError: If there is no manifest.
        pydantic.ValidationError: If the file is not a valid manifest.
    """
    if path.is_dir():
        path = path / MANIFEST_NAME
    return TrackManifest.model_validate_json(path.read_bytes())
