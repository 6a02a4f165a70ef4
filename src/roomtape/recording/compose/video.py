import logging
from collections.abc import Iterator, Sequence

import av
from av.video.frame import VideoFrame

from roomtape.recording.compose.timeline import Segment

__all__ = ["VideoSource"]

log = logging.getLogger(__name__)


class VideoSource:
    """One participant video track on the wall clock, decoded as it is read.

    `frame_at(t)` returns the latest frame whose wall-clock time is at or before ``t``, while
    the segment it came from still covers ``t`` (outside any recorded gap); None otherwise.
    Segments are opened one at a time, only when reached; segments that end before a read are
    never decoded. Reads must move forward. Memory: the shown frame and the next one.

    Args:
        segments: The track's segments, sorted by start.
        decoder_threads: Decoder threads (0 lets FFmpeg choose).
    """

    def __init__(self, segments: Sequence[Segment], decoder_threads: int = 0) -> None:
        self._segments = list(segments)
        self._next_segment = 0
        self._threads = decoder_threads
        self._decoder: Iterator[tuple[float, VideoFrame]] | None = None
        self._decoding: Segment | None = None
        self._current: tuple[float, VideoFrame, Segment] | None = None
        self._pending: tuple[float, VideoFrame, Segment] | None = None
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
        _, frame, segment = current
        if t_ms >= segment.end_ms or any(start <= t_ms < end for start, end in segment.gaps):
            return None
        return frame

    def close(self) -> None:
        """Release the open segment, if any."""
        if self._decoder is not None:
            close = getattr(self._decoder, "close", None)
            if close is not None:
                close()
            self._decoder = None

    def _pull(self, t_ms: float) -> tuple[float, VideoFrame, Segment] | None:
        while True:
            if self._decoder is None:
                while self._next_segment < len(self._segments) and self._segments[self._next_segment].end_ms <= t_ms:
                    self._next_segment += 1  # wholly in the past: never decoded
                if self._next_segment >= len(self._segments):
                    return None
                self._decoding = self._segments[self._next_segment]
                self._next_segment += 1
                self._decoder = self._decode(self._decoding)
            try:
                wall, frame = next(self._decoder)
            except StopIteration:
                self._decoder = None
                continue
            assert self._decoding is not None
            self.decoded += 1
            return wall, frame, self._decoding

    def _decode(self, segment: Segment) -> Iterator[tuple[float, VideoFrame]]:
        try:
            with av.open(str(segment.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                stream.codec_context.thread_count = self._threads
                for frame in container.decode(stream):
                    if frame.pts is None:
                        continue
                    yield segment.start_ms + float(frame.pts * (frame.time_base or 0)) * 1000, frame
        except av.FFmpegError as exc:  # a truncated or damaged file: keep what decoded
            log.warning("%s: video decoding stopped: %s", segment.path, exc)
