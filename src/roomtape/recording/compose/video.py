import logging
from collections.abc import Callable, Iterator, Sequence
from typing import IO

import av
from av.video.frame import VideoFrame

from roomtape.recording.compose.timeline import Segment

__all__ = ["PROBE_OPTIONS", "Opener", "VideoSource", "open_path"]

log = logging.getLogger(__name__)

# The track header says all a WebM segment's decoder needs; probing further would, on a file the recorder is
# still writing, wait for about a second of media that is not there yet.
PROBE_OPTIONS: dict[str, str] = {"analyzeduration": "1"}  # 1 µs: 0 would mean the default, 5 s

Opener = Callable[[Segment], "str | IO[bytes]"]
"""What ``av.open`` reads a segment from: its path (a closed file) or a reader that follows a growing one."""


def open_path(segment: Segment) -> str:
    """The opener of closed files: the segment's path."""
    return str(segment.path)


class VideoSource:
    """One participant video track on the wall clock, decoded as it is read.

    `frame_at(t)` returns the latest frame whose wall-clock time is at or before ``t``, while
    the segment it came from still covers ``t`` (outside any recorded gap); None otherwise.
    Segments are opened one at a time, only when reached; segments that end before a read are
    never decoded. Reads must move forward. Memory: the shown frame and the next one.

    Args:
        segments: The track's segments, sorted by start.
        decoder_threads: Decoder threads (0 lets FFmpeg choose).
        opener: What to decode a segment from (`open_path` for closed files).
    """

    def __init__(self, segments: Sequence[Segment], decoder_threads: int = 0, opener: Opener = open_path) -> None:
        self._segments = list(segments)
        self._opener = opener
        self._next_segment = 0
        self._threads = decoder_threads
        self._decoder: Iterator[tuple[float, VideoFrame]] | None = None
        self._decoding = -1  # index into _segments of the open segment
        self._current: tuple[float, VideoFrame, int] | None = None
        self._pending: tuple[float, VideoFrame, int] | None = None
        self.decoded = 0
        """Frames decoded so far (shown or not)."""

    def frame_at(self, t_ms: float) -> VideoFrame | None:
        """The frame showing at a wall-clock instant.

        Args:
            t_ms: Wall-clock time, ms since the Unix epoch.

        Returns:
            The frame, or None when the track has no picture at that time.
        """
        while True:
            if self._pending is None:
                self._pending = self._pull(t_ms)
                if self._pending is None:
                    break
            if self._pending[0] > t_ms:
                break
            self._current, self._pending = self._pending, None
        current = self._current
        if current is None:
            return None
        _, frame, index = current
        segment = self._segments[index]  # the latest version: a live segment's end is known once it closes
        if t_ms >= segment.end_ms or any(start <= t_ms < end for start, end in segment.gaps):
            return None
        return frame

    def update(self, segments: Sequence[Segment]) -> None:
        """Take the track's segments as they are now (live rendering: more of them, and ends of closed ones).

        Args:
            segments: The track's segments, sorted by start; those given before keep their positions.
        """
        self._segments = list(segments)

    def close(self) -> None:
        """Release the open segment, if any."""
        if self._decoder is not None:
            close = getattr(self._decoder, "close", None)
            if close is not None:
                close()
            self._decoder = None

    def _pull(self, t_ms: float) -> tuple[float, VideoFrame, int] | None:
        while True:
            if self._decoder is None:
                while self._next_segment < len(self._segments) and self._segments[self._next_segment].end_ms <= t_ms:
                    self._next_segment += 1  # wholly in the past: never decoded
                if self._next_segment >= len(self._segments):
                    return None
                self._decoding = self._next_segment
                self._next_segment += 1
                self._decoder = self._decode(self._segments[self._decoding])
            try:
                wall, frame = next(self._decoder)
            except StopIteration:
                self._decoder = None
                continue
            self.decoded += 1
            return wall, frame, self._decoding

    def _decode(self, segment: Segment) -> Iterator[tuple[float, VideoFrame]]:
        try:
            with av.open(self._opener(segment), "r", options=PROBE_OPTIONS) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                codec = stream.codec_context
                codec.thread_count = self._threads
                bad = 0
                for packet in container.demux(stream):
                    try:
                        frames = codec.decode(packet)  # the end-of-stream packet (size 0) flushes the decoder
                    except av.FFmpegError as exc:
                        # A frame the network damaged (seen under load: VP8 frames with a lost partition) spoils
                        # itself and the frames that refer to it until the next keyframe, not the rest of the file:
                        # the picture holds meanwhile.
                        bad += 1
                        if bad == 1:
                            log.warning("%s: undecodable frame at pts %s skipped: %s", segment.path, packet.pts, exc)
                        continue
                    for frame in frames:
                        if frame.pts is None:
                            continue
                        yield segment.start_ms + float(frame.pts * (frame.time_base or 0)) * 1000, frame
                if bad:
                    log.warning("%s: %d undecodable frames skipped", segment.path, bad)
        except av.FFmpegError as exc:  # a truncated or damaged file: keep what decoded
            log.warning("%s: video decoding stopped: %s", segment.path, exc)
