import logging
from collections.abc import Iterator, Sequence
from fractions import Fraction
from typing import Final

import av
import numpy as np
import numpy.typing as npt

from roomtape.recording.compose.timeline import Segment, Timeline
from roomtape.recording.compose.video import PROBE_OPTIONS, Opener, open_path

__all__ = ["MIX_RATE", "AudioSource", "Limiter", "Samples", "SpeakerDetector", "level_db"]

log = logging.getLogger(__name__)

Samples = npt.NDArray[np.float32]
"""Planar float samples, shape (channels, n), full scale ±1."""

MIX_RATE: Final = 48000
"""Sample rate of the mix (Opus's own rate: no resampling on the way in)."""

_SILENCE_DB: Final = -60.0
_CONTINUOUS_MS: Final = 30  # a segment starting this close to the previous one's end continues its stream


def level_db(samples: Samples | None) -> float:
    """RMS level in dBFS (-60 for silence or no samples)."""
    if samples is None or not samples.size:
        return _SILENCE_DB
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return max(_SILENCE_DB, 20 * np.log10(rms)) if rms > 0 else _SILENCE_DB


class AudioSource:
    """One participant track's audio on the mix clock, decoded as it is read.

    Segments are opened one at a time, in order, only when a read reaches them; segments that end
    before a read are never decoded (paused spans cost nothing). Each decoded frame is placed at
    the segment's wall-clock start plus its pts, so gaps inside a segment stay silent. A segment that starts
    where the previous one ended (a track split by ``segment_max_seconds``) is decoded by the same decoder: a
    fresh Opus decoder fades in over its first packets, which would dent the sound at every split.

    Reads must move forward (non-decreasing start); memory is a few frames.

    Args:
        segments: The track's segments, sorted by start.
        timeline: The output timeline (for the mix clock).
        channels: 1 (downmixed) or 2 (stereo; mono sources are duplicated).
        opener: What to decode a segment from (`open_path` for closed files).
        kind: Which of the participant's tracks it is.
    """

    def __init__(
        self,
        segments: Sequence[Segment],
        timeline: Timeline,
        channels: int,
        opener: Opener = open_path,
        *,
        kind: str = "audio",
    ) -> None:
        self.kind = kind
        self._segments = list(segments)
        self._opener = opener
        self._next_segment = 0
        self._timeline = timeline
        self._channels = channels
        self._decoder: Iterator[tuple[int, Samples]] | None = None
        self._buffer: list[tuple[int, Samples]] = []
        self._decoded_until = -(1 << 62)
        self._codec: av.AudioCodecContext | None = None  # the last segment's decoder, kept for a continuation
        self._codec_end_ms = 0

    def read(self, start: int, count: int) -> Samples | None:
        """Samples for a range of the mix clock.

        Args:
            start: First wall-clock sample (see `Timeline.wall_sample`).
            count: How many samples.

        Returns:
            (channels, count) float32, or None if the track has nothing in the range.
        """
        end = start + count
        self._buffer = [(pos, arr) for pos, arr in self._buffer if pos + arr.shape[1] > start]
        self._fill(start, end)
        out: Samples | None = None
        for pos, arr in self._buffer:
            lo, hi = max(pos, start), min(pos + arr.shape[1], end)
            if lo >= hi:
                continue
            if out is None:
                out = np.zeros((self._channels, count), np.float32)
            out[:, lo - start : hi - start] = arr[:, lo - pos : hi - pos]
        return out

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

    def _fill(self, start: int, end: int) -> None:
        while self._decoded_until < end:
            if self._decoder is None:
                segment = self._open_next(start, end)
                if segment is None:
                    return
                continue
            try:
                pos, arr = next(self._decoder)
            except StopIteration:
                self._decoder = None
                continue
            if pos + arr.shape[1] > start:  # frames skipped over (a paused span) are dropped at once
                self._buffer.append((pos, arr))
            self._decoded_until = max(self._decoded_until, pos + arr.shape[1])

    def _open_next(self, start: int, end: int) -> Segment | None:
        timeline = self._timeline
        while self._next_segment < len(self._segments):
            segment = self._segments[self._next_segment]
            if timeline.wall_sample(segment.end_ms) <= start:
                self._next_segment += 1  # wholly before the read: never decoded
                continue
            if timeline.wall_sample(segment.start_ms) >= end:
                return None  # not reached yet
            self._next_segment += 1
            self._decoder = self._decode(segment)
            self._decoded_until = max(self._decoded_until, timeline.wall_sample(segment.start_ms))
            return segment
        return None

    def _decode(self, segment: Segment) -> Iterator[tuple[int, Samples]]:
        origin = self._timeline.wall_sample(segment.start_ms)
        try:
            with av.open(self._opener(segment), "r", options=PROBE_OPTIONS) as container:
                stream = container.streams.audio[0]
                codec = self._codec
                if (
                    codec is None
                    or codec.name != stream.codec_context.name
                    or abs(segment.start_ms - self._codec_end_ms) > _CONTINUOUS_MS
                ):
                    codec = stream.codec_context
                self._codec, self._codec_end_ms = codec, segment.end_ms
                resampler: av.AudioResampler | None = None
                time_base: Fraction | None = None
                num, den = 0, 1
                # Packets go to the decoder without the end-of-file flush: Opus holds nothing back, and a
                # continuation goes on with its state.
                frames = (f for packet in container.demux(stream) if packet.size for f in codec.decode(packet))
                for frame in frames:
                    if frame.pts is None:
                        continue
                    if frame.time_base != time_base:
                        # pts to mix samples in integers, not Fraction arithmetic per 20 ms frame
                        time_base = frame.time_base or Fraction(1, 1000)
                        num, den = MIX_RATE * time_base.numerator, time_base.denominator
                    pos = origin + (frame.pts * num + den // 2) // den
                    if frame.format.name == "fltp" and frame.sample_rate == MIX_RATE:
                        # FFmpeg's Opus decoder already gives 48 kHz planar float: no resampler pass, and the
                        # planes are read directly (to_ndarray stacks them through np.vstack)
                        yield pos, self._planes(frame)
                        continue
                    if resampler is None:
                        resampler = av.AudioResampler(format="fltp", rate=MIX_RATE)
                    for out in resampler.resample(frame):
                        arr: Samples = out.to_ndarray().astype(np.float32, copy=False)
                        yield pos, self._map_channels(arr)
                        pos += arr.shape[1]
        except av.FFmpegError as exc:  # a truncated or damaged file: keep what decoded
            log.warning("%s: audio decoding stopped: %s", segment.path, exc)

    def _planes(self, frame: av.AudioFrame) -> Samples:
        n = frame.samples
        planes = [np.frombuffer(memoryview(plane), np.float32, n) for plane in frame.planes]
        if self._channels == 1 and len(planes) == 2:
            mono: Samples = ((planes[0] + planes[1]) * np.float32(0.5))[np.newaxis]
            return mono
        return self._map_channels(np.stack(planes))

    def _map_channels(self, arr: Samples) -> Samples:
        have = arr.shape[0]
        if have == self._channels:
            return arr
        if self._channels == 1:
            if have == 2:
                halves: Samples = ((arr[0] + arr[1]) * np.float32(0.5))[np.newaxis]
                return halves
            mono: Samples = arr.mean(axis=0, keepdims=True, dtype=np.float32)
            return mono
        return np.repeat(arr[:1], self._channels, axis=0) if have == 1 else arr[: self._channels]


class Limiter:
    """A linked peak limiter: scales the mix down where it would clip, and recovers slowly.

    Summing voices can exceed full scale; hard clipping then sounds harsh. The gain drops at
    once (ramped over the first ``attack`` samples of a block) to keep the block's peak under
    ``ceiling`` and recovers towards 1 with a ``release_seconds`` time constant. Whatever
    still exceeds ±1 during the attack ramp is clipped.

    Args:
        ceiling: The peak the output is held under.
        release_seconds: Time constant of the gain's recovery.
        rate: Sample rate.
    """

    def __init__(self, ceiling: float = 0.98, release_seconds: float = 0.25, rate: int = MIX_RATE) -> None:
        self._ceiling = ceiling
        self._release = release_seconds * rate
        self._attack = rate // 500  # 2 ms
        self._gain = 1.0

    def process(self, mix: Samples) -> Samples:
        """Limit one block in place.

        Args:
            mix: (channels, n) samples.

        Returns:
            The same array, limited.
        """
        n = mix.shape[1]
        if not n:
            return mix
        peak = float(np.max(np.abs(mix)))
        wanted = min(1.0, self._ceiling / peak) if peak > 0 else 1.0
        if wanted < self._gain:
            target = wanted
            ramp_len = min(self._attack, n)
        else:
            target = self._gain + (wanted - self._gain) * (1 - np.exp(-n / self._release))
            ramp_len = n
        if target == 1.0 and self._gain == 1.0:
            return mix
        gain = np.full(n, target, np.float32)
        gain[:ramp_len] = np.linspace(self._gain, target, ramp_len, endpoint=False, dtype=np.float32)
        mix *= gain
        np.clip(mix, -1.0, 1.0, out=mix)
        self._gain = float(target)
        return mix


class SpeakerDetector:
    """Picks the active speaker from audio levels, with hold and hysteresis.

    Levels are smoothed (exponential, ``smoothing_seconds``). The speaker changes only when
    someone else is louder by ``margin_db`` (or the speaker went silent or left), and not
    sooner than ``hold_seconds`` after the last change, so the big tile does not flicker.

    Args:
        hold_seconds: Least time between changes.
        margin_db: How much louder a challenger must be.
        smoothing_seconds: Time constant of the level smoothing.
        silence_db: Below this a participant counts as silent.
    """

    def __init__(
        self,
        hold_seconds: float = 1.5,
        margin_db: float = 3.0,
        smoothing_seconds: float = 0.3,
        silence_db: float = -45.0,
    ) -> None:
        self._hold = hold_seconds
        self._margin = margin_db
        self._tau = smoothing_seconds
        self._silence = silence_db
        self._levels: dict[str, float] = {}
        self._speaker: str | None = None
        self._since = float("-inf")

    @property
    def speaker(self) -> str | None:
        """The current speaker."""
        return self._speaker

    def update(self, now: float, seconds: float, levels: dict[str, float]) -> str | None:
        """Feed one block's levels.

        Args:
            now: Output time of the block, seconds.
            seconds: Length of the block.
            levels: dBFS level per present participant (absent ones are forgotten).

        Returns:
            The speaker after this block (None if nobody is present).
        """
        alpha = 1 - float(np.exp(-seconds / self._tau))
        smoothed = {
            pid: self._levels.get(pid, _SILENCE_DB) + alpha * (level - self._levels.get(pid, _SILENCE_DB))
            for pid, level in levels.items()
        }
        self._levels = smoothed
        if not smoothed:
            self._speaker = None
            return None
        loudest = max(smoothed, key=lambda pid: smoothed[pid])
        current = self._speaker
        if current not in smoothed:
            self._set(loudest, now)
        elif loudest != current and now - self._since >= self._hold:
            louder = smoothed[loudest] >= smoothed[current] + self._margin
            if smoothed[loudest] > self._silence and (louder or smoothed[current] <= self._silence):
                self._set(loudest, now)
        return self._speaker

    def _set(self, speaker: str, now: float) -> None:
        self._speaker = speaker
        self._since = now
