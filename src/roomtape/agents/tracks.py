"""Local tracks for the Python client: tracks that code pushes PCM or pictures into, and a mute gate.

aiortc's :class:`~aiortc.mediastreams.MediaStreamTrack` has no ``enabled`` flag; :class:`MuteGate` adds one
the way browsers do it: a muted video track keeps sending black pictures and a muted audio track silence,
so the peer connection, the RTP clocks and the recorder's files carry on, and the explicit mute message
tells everyone else why the content went blank.
"""

from __future__ import annotations

import asyncio
import fractions
import time
from typing import TYPE_CHECKING, Any, Final

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

__all__ = ["AUDIO_SAMPLE_RATE", "AudioPushTrack", "MuteGate", "VideoPushTrack"]

AUDIO_SAMPLE_RATE: Final = 48000
"""Sample rate of pushed PCM: Opus's native rate, so nothing is resampled before encoding."""

_AUDIO_PTIME: Final = 0.02  # 20 ms frames: what Opus in WebRTC sends by default (RFC 7587 §4.2)
_VIDEO_TIME_BASE: Final = fractions.Fraction(1, 90000)


class AudioPushTrack(MediaStreamTrack):
    """An audio track fed by code: push 16-bit PCM at 48 kHz, it is sent in 20 ms frames in real time.

    When nothing was pushed in time, silence goes out (like an idle microphone), so the track never stalls.
    Pushed audio beyond ``max_buffered`` seconds drops the oldest samples: a producer faster than real time
    would otherwise build up unbounded latency.

    Args:
        channels: 1 (mono) or 2 (interleaved stereo).
        max_buffered: Seconds of pushed audio kept before the oldest is dropped.
    """

    kind = "audio"

    def __init__(self, *, channels: int = 1, max_buffered: float = 5.0) -> None:
        super().__init__()
        if channels not in (1, 2):
            raise ValueError("channels must be 1 or 2")
        self.channels = channels
        self._bytes_per_sample = 2 * channels
        self._buffer = bytearray()
        self._max_bytes = int(max_buffered * AUDIO_SAMPLE_RATE) * self._bytes_per_sample
        self._samples = 0
        self._start: float | None = None

    def push(self, pcm: bytes | npt.NDArray[np.int16]) -> None:
        """Queue samples to send.

        Args:
            pcm: ``int16`` samples, interleaved when stereo: a numpy array (any shape, read in C order) or
                little-endian bytes.
        """
        data = pcm if isinstance(pcm, bytes | bytearray) else pcm.astype("<i2", copy=False).tobytes()
        self._buffer += data
        excess = len(self._buffer) - self._max_bytes
        if excess > 0:
            del self._buffer[: excess - excess % self._bytes_per_sample + self._bytes_per_sample]

    @property
    def buffered(self) -> float:
        """Seconds of pushed audio not sent yet."""
        return len(self._buffer) / self._bytes_per_sample / AUDIO_SAMPLE_RATE

    @property
    def due_in(self) -> float:
        """Seconds from now until the next pushed sample is due to go out.

        Frames go out on a fixed schedule (their RTP timestamps count samples from the first frame), so this
        is the schedule's time of the sample after the buffered ones: it is ``buffered`` while the sender keeps
        up, and less — even negative — while it runs late and catches up (the sample keeps its place on the
        timeline the receiver and the recorder see).
        """
        if self._start is None:
            return self.buffered
        due = self._start + (self._samples + len(self._buffer) / self._bytes_per_sample) / AUDIO_SAMPLE_RATE
        return due - time.monotonic()

    async def recv(self) -> av.AudioFrame:
        """Return the next 20 ms frame, waiting until it is due."""
        if self.readyState != "live":
            raise MediaStreamError
        n = int(_AUDIO_PTIME * AUDIO_SAMPLE_RATE)
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(self._start + self._samples / AUDIO_SAMPLE_RATE - time.monotonic())
        size = n * self._bytes_per_sample
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        chunk += bytes(size - len(chunk))
        frame = av.AudioFrame(format="s16", layout="mono" if self.channels == 1 else "stereo", samples=n)
        frame.planes[0].update(chunk)
        frame.sample_rate = AUDIO_SAMPLE_RATE
        frame.pts = self._samples
        frame.time_base = fractions.Fraction(1, AUDIO_SAMPLE_RATE)
        self._samples += n
        return frame


class VideoPushTrack(MediaStreamTrack):
    """A video track fed by code: push pictures, the latest one is sent ``fps`` times a second.

    Until the first push, black pictures of ``width`` x ``height`` go out; afterwards the last picture is
    repeated when nothing new was pushed (the encoder makes that nearly free).

    Args:
        width: Width of the initial black picture.
        height: Height of the initial black picture.
        fps: Frames per second sent.
    """

    kind = "video"

    def __init__(self, *, width: int = 640, height: int = 480, fps: float = 30.0) -> None:
        super().__init__()
        self.fps = fps
        self._latest: av.VideoFrame = _black(width, height)
        self._count = 0
        self._start: float | None = None

    def push(self, picture: av.VideoFrame | npt.NDArray[np.uint8]) -> None:
        """Make ``picture`` the one sent from the next frame on.

        Args:
            picture: An ``av.VideoFrame``, or a numpy ``uint8`` array of shape (height, width, 3) in RGB.
        """
        if isinstance(picture, av.VideoFrame):
            self._latest = picture
        else:
            self._latest = av.VideoFrame.from_ndarray(picture, format="rgb24")

    async def recv(self) -> av.VideoFrame:
        """Return the next picture, waiting until it is due."""
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        else:
            await asyncio.sleep(self._start + self._count / self.fps - time.monotonic())
        source = self._latest
        # A fresh frame per call: the encoder reads pts from it, and pushed frames may be pushed again.
        frame = source.reformat(format="yuv420p") if source.format.name != "yuv420p" else _copy(source)
        frame.pts = int(self._count / self.fps / _VIDEO_TIME_BASE)
        frame.time_base = _VIDEO_TIME_BASE
        self._count += 1
        return frame


class MuteGate(MediaStreamTrack):
    """Passes a source track through, sending black pictures or silence while :attr:`muted` is set.

    Args:
        source: The track to gate (its frames must be decoded ``av.AudioFrame`` / ``av.VideoFrame``).
    """

    def __init__(self, source: MediaStreamTrack) -> None:
        super().__init__()
        self.kind = source.kind
        self.source = source
        """The gated track."""
        self.muted = False
        """While True, content is replaced by black or silence."""
        self.captured_at: float | None = None
        """Capture time (``time.time()`` clock) of the latest frame, from its timestamp (see :meth:`recv`)."""
        self._anchor: float | None = None

    async def recv(self) -> Any:
        """Return the source's next frame, blanked while muted.

        Also notes the frame's capture time: ``anchor + pts * time_base``, where the anchor (the wall-clock time
        of pts 0) is the earliest ``now - pts * time_base`` seen so far. A frame is handed out at its capture
        time or later (a busy event loop only delays it), so the minimum converges on the true anchor, and one
        late frame does not shift the capture clock.
        """
        frame = await self.source.recv()
        now = time.time()
        if frame.pts is not None and frame.time_base is not None:
            media = float(frame.pts * frame.time_base)
            anchor = now - media if self._anchor is None else min(self._anchor, now - media)
            self._anchor = anchor
            self.captured_at = anchor + media
        else:
            self.captured_at = now
        if not self.muted:
            return frame
        if isinstance(frame, av.AudioFrame):
            silent = av.AudioFrame(format=frame.format.name, layout=frame.layout.name, samples=frame.samples)
            for plane in silent.planes:
                plane.update(bytes(plane.buffer_size))
            silent.sample_rate, silent.pts, silent.time_base = frame.sample_rate, frame.pts, frame.time_base
            return silent
        if isinstance(frame, av.VideoFrame):
            black = _black(frame.width, frame.height)
            black.pts, black.time_base = frame.pts, frame.time_base
            return black
        return frame

    def stop(self) -> None:
        """Stop this track and its source."""
        super().stop()
        self.source.stop()


def _black(width: int, height: int) -> av.VideoFrame:
    frame = av.VideoFrame(width, height, "yuv420p")
    # Video range (ITU-R BT.601): black is luma 16, neutral chroma 128.
    for plane, value in zip(frame.planes, (16, 128, 128), strict=True):
        plane.update(bytes([value]) * plane.buffer_size)
    return frame


def _copy(frame: av.VideoFrame) -> av.VideoFrame:
    copy = av.VideoFrame(frame.width, frame.height, "yuv420p")
    for dst, src in zip(copy.planes, frame.planes, strict=True):
        dst.update(bytes(src))
    return copy
