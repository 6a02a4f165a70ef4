import logging
from collections.abc import Callable
from pathlib import Path

from roomtape.recording.frame import CodecName, EncodedFrame
from roomtape.recording.manifest import (
    MANIFEST_NAME,
    SegmentEntry,
    TrackKind,
    TrackManifest,
    iso_ms,
    load,
    save,
    segment_entry,
)
from roomtape.recording.rtptime import ClockMapping, rtp_diff
from roomtape.recording.writer import SegmentStats, TrackWriter

__all__ = ["TrackRecorder", "track_directory"]

log = logging.getLogger(__name__)


def track_directory(base_dir: Path, session_id: str, participant_id: str, kind: TrackKind) -> Path:
    """The directory that holds one participant track's segments and manifest.

    Args:
        base_dir: The recording's root (the storage `bucket_dir_path` locally).
        session_id: The session.
        participant_id: The participant.
        kind: The kind of track.

    Returns:
        `{base_dir}/{session_id}/{participant_id}/{kind}`, the layout VideoSDK documents.
    """
    return base_dir / session_id / participant_id / kind


class TrackRecorder:
    """Records one participant track as a series of continuous segment files.

    A new segment (a new `TrackWriter`, a new file) starts when the client says the track was
    unmuted or restarted, and, as a backup for clients that do not say so, when non-empty
    frames stop for longer than `gap_seconds` (by arrival time or by RTP time) or the RTP
    timeline jumps backwards (a restarted sender). Video segments start on a keyframe: the
    writer drops frames until one arrives and asks for one through `on_keyframe_needed`.

    The manifest next to the files is rewritten (atomically) whenever a segment opens or
    closes. Like the writer, this is synchronous; run it in the writer thread.

    Args:
        base_dir: The recording's root directory.
        session_id: The session being recorded.
        participant_id: The participant whose track this is.
        kind: Which of the participant's tracks.
        gap_seconds: A pause in non-empty frames longer than this ends the segment.
        on_keyframe_needed: Called to ask the publisher for a keyframe (send a PLI).
        on_segment: Called (in the writer thread) with a segment's manifest entry when its first
            frame is written (status "recording") and again when it closes (status "complete").
        max_segment_seconds: A segment longer than this (by arrival time) is closed and the next one
            started, so a long track reaches the spool in pieces while it is recorded. Audio splits at the
            next frame; video at the next keyframe, which is asked for then (nothing is dropped: frames
            go to the old segment until the keyframe arrives). 0: no limit.
    """

    _MAX_REORDER_SECONDS = 0.5  # a backwards RTP step larger than this is a restart, not reordering

    def __init__(
        self,
        base_dir: Path,
        session_id: str,
        participant_id: str,
        kind: TrackKind,
        *,
        gap_seconds: float = 2.0,
        on_keyframe_needed: Callable[[], None] | None = None,
        on_segment: Callable[[SegmentEntry], None] | None = None,
        max_segment_seconds: float = 0.0,
    ) -> None:
        self.directory = track_directory(base_dir, session_id, participant_id, kind)
        self.kind: TrackKind = kind
        self._gap_seconds = gap_seconds
        self._on_keyframe_needed = on_keyframe_needed
        self._on_segment = on_segment
        self._max_segment_seconds = max_segment_seconds
        self._segment_started = 0.0
        self._rotation_asked = float("-inf")
        self._last_entry: SegmentEntry | None = None
        self._continues: SegmentEntry | None = None  # the segment the open one continues without a break
        self._writer: TrackWriter | None = None
        self._index = 0
        self._split = False
        self._last_arrival = 0.0
        self._last_rtp = 0
        self._codec: CodecName | None = None
        self._clock_mapping: ClockMapping | None = None
        manifest_path = self.directory / MANIFEST_NAME
        if manifest_path.exists():
            # A restarted recorder continues the numbering instead of overwriting segments.
            self._manifest = load(manifest_path)
            self._index = max((s.index for s in self._manifest.segments), default=0)
        else:
            self._manifest = TrackManifest(session_id=session_id, participant_id=participant_id, kind=kind)

    @property
    def segments(self) -> list[SegmentEntry]:
        """The segments recorded so far (the open one, if any, as "recording")."""
        return list(self._manifest.segments)

    @property
    def manifest(self) -> TrackManifest:
        """The current manifest."""
        return self._manifest

    @property
    def open_since(self) -> float | None:
        """Arrival time of the open segment's first frame; None while no segment holds a frame."""
        writer = self._writer
        return self._segment_started if writer is not None and writer.frames else None

    @property
    def needs_keyframe(self) -> bool:
        """True while the open video segment waits for its first keyframe."""
        return self._writer is not None and self._writer.needs_keyframe

    def write(self, frame: EncodedFrame) -> bool:
        """Record one frame, opening a new segment first if one is due.

        Args:
            frame: The next frame of the track.

        Returns:
            True if the frame was written, False if dropped (empty, waiting for a keyframe, or
            late).
        """
        if not frame.data:
            return False  # empty frames (padding) say nothing about the track being live
        writer = self._writer
        if writer is not None and writer.frames:
            if self._split or frame.codec != self._codec:
                self._close_segment()
                writer = None
            else:
                step = rtp_diff(frame.rtp_timestamp, self._last_rtp) / frame.clock_rate
                if (
                    frame.arrival - self._last_arrival > self._gap_seconds
                    or step > self._gap_seconds
                    or step < -self._MAX_REORDER_SECONDS
                ):
                    log.info("%s: %.2f s gap, new segment", self.directory, frame.arrival - self._last_arrival)
                    self._close_segment()
                    writer = None
                elif self._rotation_due(frame):
                    self._close_segment(continued=True)
                    writer = None
        if writer is None:
            writer = self._open_segment()
        self._split = False
        if not writer.write(frame):
            return False
        if writer.frames == 1:
            self._segment_started = frame.arrival
            self._publish(writer, complete=False)
        self._last_arrival = frame.arrival
        self._last_rtp = frame.rtp_timestamp
        self._codec = frame.codec
        return True

    def on_mute(self) -> None:
        """The client muted (or stopped) the track: finish the open segment now."""
        self._close_segment()

    def on_unmute(self) -> None:
        """The client unmuted the track: the next frame starts a new segment."""
        self._new_segment_due()

    def on_restart(self) -> None:
        """The client restarted or replaced the track: the next frame starts a new segment."""
        self._new_segment_due()

    def set_clock_mapping(self, ntp_epoch_seconds: float, rtp_timestamp: int) -> None:
        """Record the latest RTCP sender report's NTP↔RTP pair for this track.

        It is used for the wall-clock start and end of the open segment and later ones.

        Args:
            ntp_epoch_seconds: The report's NTP time, in seconds since the Unix epoch.
            rtp_timestamp: The report's 32-bit RTP timestamp.
        """
        first = self._clock_mapping is None
        self._clock_mapping = ClockMapping(ntp_epoch_seconds, rtp_timestamp)
        writer = self._writer
        if first and writer is not None and writer.frames:
            # The open segment's entry had arrival times: say its sender-report start now, not only at its close,
            # so that a live render (which reads open segments) lines the tracks up as the render from files does.
            self._publish(writer, complete=False)

    def check_idle(self, now: float) -> bool:
        """Close the open segment if no frame has arrived for longer than the gap threshold.

        Call this periodically (e.g. once a second): it finalizes a file whose track went
        quiet instead of leaving its last cluster unflushed until the next frame.

        Args:
            now: The current wall-clock time, seconds since the Unix epoch.

        Returns:
            True if a segment was closed.
        """
        if self._writer is not None and self._writer.frames and now - self._last_arrival > self._gap_seconds:
            self._close_segment()
            return True
        return False

    def close(self) -> list[SegmentEntry]:
        """Finish the open segment and return all segments.

        Returns:
            The manifest's segments.
        """
        self._close_segment()
        return self.segments

    def _rotation_due(self, frame: EncodedFrame) -> bool:
        """Whether the open segment reached ``max_segment_seconds`` and ``frame`` can start the next one."""
        if not self._max_segment_seconds or frame.arrival - self._segment_started < self._max_segment_seconds:
            return False
        if not self.kind.endswith("video") or frame.keyframe:
            return True
        # Keep writing this segment until a keyframe comes; ask again each second if the first ask was lost.
        if self._on_keyframe_needed is not None and frame.arrival - self._rotation_asked >= 1.0:
            self._rotation_asked = frame.arrival
            self._on_keyframe_needed()
        return False

    def _new_segment_due(self) -> None:
        if self._writer is not None and self._writer.frames:
            self._split = True
        if self.kind.endswith("video") and self._on_keyframe_needed is not None:
            self._on_keyframe_needed()  # ask now: the new segment cannot start without one

    def _open_segment(self) -> TrackWriter:
        self._index += 1
        index = self._index
        kind = self.kind

        def path_for(first: EncodedFrame) -> Path:
            return self.directory / f"{kind}-{index:04d}-{round(first.arrival * 1000)}.webm"

        self._writer = TrackWriter(path_for, on_keyframe_needed=self._on_keyframe_needed)
        return self._writer

    def _close_segment(self, *, continued: bool = False) -> SegmentStats | None:
        writer, self._writer = self._writer, None
        self._split = False
        if writer is None:
            self._continues = None
            return None
        stats = writer.close()
        if stats.frames:
            self._publish(writer, complete=True)
        else:
            self._index -= 1  # nothing was written, so no file: reuse the index
        self._continues = self._last_entry if continued and stats.frames else None
        return stats

    def _publish(self, writer: TrackWriter, *, complete: bool) -> None:
        stats = writer.stats()
        entry = segment_entry(self._index, stats, complete=complete, clock_mapping=self._clock_mapping)
        anchor = self._continues
        if anchor is not None:
            # Split by `max_segment_seconds` only: the RTP timeline runs on, so this segment is placed right
            # after the previous one by RTP time, not by its own (noisier) arrival time or a newer sender report.
            start = anchor.start_epoch_ms + round(rtp_diff(entry.first_rtp, anchor.first_rtp) * 1000 / entry.clock_rate)
            end = start + round(stats.duration_seconds * 1000)
            timing = {"start_epoch_ms": start, "end_epoch_ms": end, "start": iso_ms(start), "end": iso_ms(end)}
            entry = entry.model_copy(
                update={**timing, "timing_source": anchor.timing_source, "clock_mapping": anchor.clock_mapping}
            )
        self._last_entry = entry
        segments = [s for s in self._manifest.segments if s.index != entry.index]
        segments.append(entry)
        self._manifest = self._manifest.model_copy(update={"segments": segments})
        save(self._manifest, self.directory)
        if self._on_segment is not None:
            self._on_segment(entry)
