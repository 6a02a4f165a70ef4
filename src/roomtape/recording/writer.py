import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
from av.container import OutputContainer
from av.stream import Stream

from roomtape.recording.codecs import OPUS_SAMPLE_RATE, frame_size, opus_head, opus_packet_samples
from roomtape.recording.frame import VIDEO_CODECS, CodecName, EncodedFrame
from roomtape.recording.rtptime import RtpUnwrapper

__all__ = [
    "AUDIO_MUXER_OPTIONS",
    "MUXER_OPTIONS",
    "VIDEO_MUXER_OPTIONS",
    "Gap",
    "SegmentStats",
    "TrackWriter",
    "open_webm",
]

log = logging.getLogger(__name__)

MUXER_OPTIONS: Final[dict[str, str]] = {
    # Matroska keeps the open cluster in memory and writes it out whole when it closes; a
    # cluster closes on the first packet more than `cluster_time_limit` ms after it began. With
    # 500 ms, and the AVIO buffer flushed after every packet, a SIGKILL loses at most about half
    # a second plus one inter-frame interval. Flushing after every packet costs little: the AVIO
    # buffer only holds data when a cluster has just been closed, so it is one write() per cluster
    # (measured: 12.2 vs 11.5 µs per VP8 frame, 3.7 vs 3.4 µs per Opus packet, with and without).
    "cluster_time_limit": "500",
    "flush_packets": "1",
}
"""libavformat options every track file is opened with (crash safety, see DESIGN "Crash safety")."""

VIDEO_MUXER_OPTIONS: Final[dict[str, str]] = {
    **MUXER_OPTIONS,
    # Video also closes a cluster once it holds 16 KiB: the first keyframe reaches the disk with the
    # next frame (not half a second later), and at ~1.5 Mbit/s a crash loses ~0.1 s instead of 0.5 s.
    # About ten clusters a second cost a few bytes each; cues stay one per keyframe.
    "cluster_size_limit": "16384",
}
"""libavformat options of video track files."""

AUDIO_MUXER_OPTIONS: Final[dict[str, str]] = {
    **MUXER_OPTIONS,
    # Opus files close a cluster every 180 ms: the first packet reaches the disk within ~250 ms of the first
    # frame (p50, bench/track_recording.py latency run; 562 ms with 500 ms clusters) and a crash loses ~0.2 s.
    # The muxer keeps one cue point per audio cluster in memory until the file closes: RSS grew 1.1-1.3 MB over
    # one hour of one track at 160-180 ms, 0.4-0.7 MB at 500 ms (measured while writing an hour of packets).
    "cluster_time_limit": "180",
}
"""libavformat options of audio (Opus) track files."""

_MATROSKA_TIME_BASE: Final = Fraction(1, 1000)
_KEYFRAME_REQUEST_INTERVAL: Final = 1.0  # seconds between keyframe requests while waiting for one
_DEFAULT_GAP_SECONDS: Final[dict[bool, float]] = {True: 0.5, False: 0.2}  # keyed by is-video


@dataclass(frozen=True, slots=True)
class Gap:
    """A span inside a segment where media stopped for longer than the gap threshold."""

    offset_ms: int
    """Where the gap starts, in ms of media time from the segment's first frame."""
    duration_ms: int
    """How long nothing arrived, in ms of media time (the RTP delta between the two frames)."""


@dataclass(frozen=True, slots=True)
class SegmentStats:
    """What one track file holds; the figures the manifest and the TrackFile row are made of."""

    path: Path | None
    """The file written, or None if no frame was ever written (then no file exists)."""
    codec: CodecName | None
    """The codec muxed, or None before the first frame."""
    clock_rate: int
    """The RTP clock rate of the timestamps below (0 before the first frame)."""
    frames: int
    """Frames written."""
    keyframes: int
    """Keyframes written (every audio frame counts as one)."""
    bytes: int
    """Payload bytes written (excluding container overhead)."""
    first_rtp: int | None
    """Unwrapped RTP timestamp of the first frame written (equal to its 32-bit value)."""
    last_rtp: int | None
    """Unwrapped RTP timestamp of the last frame written (may exceed 2**32 after a wrap)."""
    last_duration: int
    """Duration of the last frame in RTP clock units (so the segment ends at last_rtp + this)."""
    start_ms: int | None
    """Wall-clock arrival of the first frame written, ms since the Unix epoch."""
    end_ms: int | None
    """Wall-clock arrival of the last frame written plus its duration, ms since the Unix epoch."""
    dropped_before_keyframe: int
    """Video frames dropped because the file had not started on a keyframe yet."""
    dropped_late: int
    """Frames dropped because they arrived behind (or at) an already written timestamp."""
    gaps: tuple[Gap, ...] = field(default=())
    """Spans without media inside the segment."""
    width: int = 0
    """Picture width from the first keyframe (video only)."""
    height: int = 0
    """Picture height from the first keyframe (video only)."""

    @property
    def duration_seconds(self) -> float:
        """Media time covered, from the first frame to the end of the last one."""
        if self.first_rtp is None or self.last_rtp is None or not self.clock_rate:
            return 0.0
        return (self.last_rtp + self.last_duration - self.first_rtp) / self.clock_rate


def open_webm(
    path: Path,
    codec: CodecName,
    *,
    width: int = 0,
    height: int = 0,
    extradata: bytes | None = None,
    channels: int = 2,
) -> tuple[OutputContainer, Stream]:
    """Open a WebM file with one stream that takes already-encoded packets.

    Nothing is encoded or decoded: video uses PyAV's codec-less mux stream; Opus needs its
    `OpusHead` as CodecPrivate, which a codec-less stream cannot carry, so it gets a codec
    context that is copied from a template and never opened (PyAV's remux path).

    Args:
        path: Where to write.
        codec: The codec of the packets.
        width: Picture width (video).
        height: Picture height (video).
        extradata: CodecPrivate; for Opus defaults to a stereo `OpusHead` with no pre-skip.
        channels: Opus channel count (1 or 2).

    Returns:
        The container (header not yet written) and its single stream.
    """
    options = VIDEO_MUXER_OPTIONS if codec in VIDEO_CODECS else AUDIO_MUXER_OPTIONS
    container = av.open(str(path), "w", format="webm", container_options=options)
    try:
        if codec in VIDEO_CODECS:
            stream = container.add_mux_stream(codec, width=width, height=height)
        else:
            with av.open(io.BytesIO(), "w", format="webm") as scratch:
                layout = "stereo" if channels == 2 else "mono"
                template = scratch.add_stream("libopus", rate=OPUS_SAMPLE_RATE, layout=layout)
                stream = container.add_stream_from_template(template)
            stream.codec_context.extradata = extradata or opus_head(channels)
        stream.time_base = _MATROSKA_TIME_BASE
    except BaseException:
        container.close()
        raise
    return container, stream


class TrackWriter:
    """Muxes one track's encoded frames into one WebM file, without decoding them.

    Synchronous and not thread-safe: the caller owns one writer per segment and runs it off the
    event loop (a worker thread), as aiortc does with its decoders. The file is created at the
    first frame that can be written: the first frame for audio, the first keyframe for video
    (its picture size goes into the track header). Frames before that are dropped and counted,
    and `on_keyframe_needed` is called (at most once a second) so the caller can send a PLI.

    Timestamps: RTP timestamps are unwrapped across the 32-bit wrap; pts is the unwrapped RTP
    timestamp minus the first one, in 1/clock_rate, with dts = pts (no B-frames in WebRTC).
    A frame at or behind the last written timestamp is dropped (Matroska needs monotonic dts).

    Args:
        path: The file to write, or a function of the first written frame that returns it (so a
            file name can carry the segment's real start time).
        on_keyframe_needed: Called when a video frame is dropped while waiting for a keyframe.
        gap_seconds: An inter-frame RTP delta above this is recorded as a gap; defaults to
            0.5 s for video and 0.2 s for audio.
        opus_channels: Channel count written into `OpusHead`.
        opus_pre_skip: Pre-skip written into `OpusHead`. 0 by default: a segment usually starts
            mid-stream of an encoder that has long since primed.
    """

    def __init__(
        self,
        path: Path | Callable[[EncodedFrame], Path],
        *,
        on_keyframe_needed: Callable[[], None] | None = None,
        gap_seconds: float | None = None,
        opus_channels: int = 2,
        opus_pre_skip: int = 0,
    ) -> None:
        self._path_for = path
        self._path: Path | None = None
        self._on_keyframe_needed = on_keyframe_needed
        self._gap_seconds = gap_seconds
        self._opus_channels = opus_channels
        self._opus_pre_skip = opus_pre_skip

        self._container: OutputContainer | None = None
        self._stream: Stream | None = None
        self._closed = False
        self._codec: CodecName | None = None
        self._is_video = False
        self._clock_rate = 0
        self._time_base = Fraction(1, 1)
        self._gap_ticks = 0
        self._unwrapper = RtpUnwrapper()
        self._last_keyframe_request = float("-inf")
        self._width = 0
        self._height = 0

        self._frames = 0
        self._keyframes = 0
        self._bytes = 0
        self._first_rtp: int | None = None
        self._last_rtp = 0
        self._last_duration = 0
        self._first_arrival = 0.0
        self._last_arrival = 0.0
        self._dropped_before_keyframe = 0
        self._dropped_late = 0
        self._gaps: list[Gap] = []

    @property
    def needs_keyframe(self) -> bool:
        """True while a video writer has not written its first keyframe yet."""
        return self._is_video and self._container is None and not self._closed

    @property
    def path(self) -> Path | None:
        """The file being written, once the first frame has been written."""
        return self._path

    @property
    def frames(self) -> int:
        """Frames written so far."""
        return self._frames

    @property
    def closed(self) -> bool:
        """Whether `close()` has been called."""
        return self._closed

    def write(self, frame: EncodedFrame) -> bool:
        """Mux one frame.

        Args:
            frame: The next frame of the track.

        Returns:
            True if the frame went into the file, False if it was dropped (before the first
            keyframe, or late).

        Raises:
            ValueError: If the writer is closed, or the frame's codec or clock rate differs from
                the segment's (a codec change needs a new segment).
        """
        if self._container is None:
            if not self._start(frame):
                return False
        elif frame.codec != self._codec or frame.clock_rate != self._clock_rate:
            raise ValueError(f"segment is {self._codec}/{self._clock_rate}, got {frame.codec}/{frame.clock_rate}")
        assert self._first_rtp is not None and self._stream is not None and self._container is not None

        rtp = self._unwrapper.unwrap(frame.rtp_timestamp)
        data = frame.data
        if self._frames:
            delta = rtp - self._last_rtp
            if delta <= 0:
                self._dropped_late += 1
                return False
            if delta > self._gap_ticks:
                self._gaps.append(
                    Gap(
                        offset_ms=(self._last_rtp - self._first_rtp) * 1000 // self._clock_rate,
                        duration_ms=delta * 1000 // self._clock_rate,
                    )
                )
            if self._is_video:
                # Video frames carry no duration: assume the previous interval, which makes a
                # constant-rate file as long as frames x interval, not one interval short.
                self._last_duration = delta
        if not self._is_video:
            self._last_duration = opus_packet_samples(data) or self._last_duration

        pts = rtp - self._first_rtp
        packet = av.Packet(data)
        packet.stream = self._stream
        packet.time_base = self._time_base
        packet.pts = pts
        packet.dts = pts
        packet.duration = self._last_duration
        if frame.keyframe or not self._is_video:
            packet.is_keyframe = True
            self._keyframes += 1
        self._container.mux_one(packet)

        self._frames += 1
        self._bytes += len(data)
        self._last_rtp = rtp
        self._last_arrival = frame.arrival
        return True

    def _start(self, frame: EncodedFrame) -> bool:
        if self._closed:
            raise ValueError("writer is closed")
        if self._codec is None:
            self._codec = frame.codec
            self._is_video = frame.codec in VIDEO_CODECS
            self._clock_rate = frame.clock_rate
            self._time_base = Fraction(1, frame.clock_rate)
            gap = self._gap_seconds if self._gap_seconds is not None else _DEFAULT_GAP_SECONDS[self._is_video]
            self._gap_ticks = int(gap * frame.clock_rate)
        elif frame.codec != self._codec or frame.clock_rate != self._clock_rate:
            raise ValueError(f"segment is {self._codec}/{self._clock_rate}, got {frame.codec}/{frame.clock_rate}")

        if self._is_video:
            size = frame_size(frame.codec, frame.data) if frame.keyframe else None
            if size is None:
                self._dropped_before_keyframe += 1
                if frame.arrival - self._last_keyframe_request >= _KEYFRAME_REQUEST_INTERVAL:
                    self._last_keyframe_request = frame.arrival
                    if self._on_keyframe_needed is not None:
                        self._on_keyframe_needed()
                return False
            self._width, self._height = size

        path = self._path_for if isinstance(self._path_for, Path) else self._path_for(frame)
        path.parent.mkdir(parents=True, exist_ok=True)
        extradata = None if self._is_video else opus_head(self._opus_channels, self._opus_pre_skip)
        self._container, self._stream = open_webm(
            path,
            frame.codec,
            width=self._width,
            height=self._height,
            extradata=extradata,
            channels=self._opus_channels,
        )
        self._path = path
        self._first_rtp = self._unwrapper.unwrap(frame.rtp_timestamp)
        self._last_rtp = self._first_rtp
        self._first_arrival = frame.arrival
        log.debug("opened %s (%s %dx%d)", path, frame.codec, self._width, self._height)
        return True

    def stats(self) -> SegmentStats:
        """Snapshot what has been written so far.

        Returns:
            The segment's figures; complete once the writer is closed.
        """
        written = self._frames > 0
        return SegmentStats(
            path=self._path,
            codec=self._codec,
            clock_rate=self._clock_rate,
            frames=self._frames,
            keyframes=self._keyframes,
            bytes=self._bytes,
            first_rtp=self._first_rtp if written else None,
            last_rtp=self._last_rtp if written else None,
            last_duration=self._last_duration,
            start_ms=round(self._first_arrival * 1000) if written else None,
            end_ms=(round((self._last_arrival + self._last_duration / self._clock_rate) * 1000) if written else None),
            dropped_before_keyframe=self._dropped_before_keyframe,
            dropped_late=self._dropped_late,
            gaps=tuple(self._gaps),
            width=self._width,
            height=self._height,
        )

    def close(self) -> SegmentStats:
        """Finish the file (trailer, cues, duration) and return its figures.

        Closing twice is harmless.

        Returns:
            The final stats of the segment.
        """
        self._closed = True
        container, self._container = self._container, None
        if container is not None:
            container.close()
        return self.stats()

    def __enter__(self) -> "TrackWriter":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
