"""Live stream outputs of a live render: HLS on disk and an RTMP/RTMPS push, fed the encoder's packets.

The live render encodes once (`roomtape.recording.compose.output.OutputFile`); every packet it muxes into its
own container (the composite file, or a null muxer for a livestream without a recording) is also handed to a
`StreamOutputs`, which muxes the same packets, unchanged, into:

- **HLS** (FFmpeg's ``hls`` muxer): ``index.m3u8`` and MPEG-TS segments of about ``hls_time`` seconds (cut at
  the encoder's keyframes, one every 2 s) in a directory, a rolling playlist of the last ``hls_list_size``
  segments (older ones deleted), written to temporary names and renamed, so a reader never sees half a file.
  Muxed in the render's thread: a local disk does not stall.
- **RTMP** (``flv`` over libavformat's ``rtmp``/``rtmps`` protocol): muxed in its own thread from a bounded
  queue, so a slow, dead or unreachable receiver never holds up the render, the HLS output or the file. On a
  connect or write error the connection is closed and opened again after 1, 2, 4 ... 30 s (exponential
  backoff, reset after a connection that carried media); while it is down its packets are dropped (it is a
  live stream). Each connection starts at a video keyframe with timestamps from 0.

State changes are reported through ``report`` (a dict: ``output`` ``hls`` or ``rtmp``, ``state`` and details),
from the render's or the RTMP thread.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, Literal

import av
from av.container import OutputContainer
from av.stream import Stream

from roomtape.recording.compose.output import StreamPacket

__all__ = ["HLS_PLAYLIST", "StreamOutputs", "StreamPacket", "backoff_delays", "redact_url"]

log = logging.getLogger(__name__)

HLS_PLAYLIST: Final = "index.m3u8"
"""File name of the HLS playlist in the output directory."""

_RTMP_QUEUE: Final = 600  # packets (about 6 s of 30 fps video and its audio) queued for the RTMP thread
_BACKOFF_FIRST: Final = 1.0
_BACKOFF_MAX: Final = 30.0

Kind = Literal["video", "audio"]
Report = Callable[[dict[str, Any]], None]


def backoff_delays(first: float = _BACKOFF_FIRST, cap: float = _BACKOFF_MAX) -> Callable[[int], float]:
    """The delay before reconnect attempt ``n`` (1-based): 1, 2, 4 ... capped at ``cap`` seconds."""
    return lambda attempt: min(cap, first * 2 ** max(0, attempt - 1))


def redact_url(url: str) -> str:
    """An RTMP URL for logs and status lines: the stream key (last path part) and any credentials hidden."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    host, _, path = rest.partition("/")
    host = host.rpartition("@")[2]
    app = path.rsplit("/", 1)[0] if "/" in path else ""
    return f"{scheme}://{host}/{app + '/' if app else ''}***"


def _add_streams(container: OutputContainer, templates: dict[Kind, Stream]) -> dict[Kind, Stream]:
    return {kind: container.add_stream_from_template(template) for kind, template in templates.items()}


class _Hls:
    """The HLS muxer (render thread)."""

    def __init__(self, directory: Path, templates: dict[Kind, Stream], segment_seconds: float, list_size: int):
        directory.mkdir(parents=True, exist_ok=True)
        self.playlist = directory / HLS_PLAYLIST
        self.container: OutputContainer = av.open(
            str(self.playlist),
            "w",
            format="hls",
            options={
                "hls_time": f"{segment_seconds:g}",
                "hls_list_size": str(list_size),
                "hls_flags": "delete_segments+independent_segments+temp_file",
                "hls_segment_filename": str(directory / "seg%05d.ts"),
            },
        )
        self.streams = _add_streams(self.container, templates)
        self.live = False

    def mux(self, item: StreamPacket) -> bool:
        """Mux a packet; True once the playlist first lists a segment."""
        self.container.mux(item.packet(self.streams[item.kind]))
        if not self.live and item.keyframe and self.playlist.exists():  # segments end at keyframes
            self.live = True
            return True
        return False

    def close(self) -> None:
        self.container.close()


class _Rtmp:
    """The RTMP push (its own thread): connect, mux from the queue, reconnect with backoff."""

    def __init__(self, url: str, templates: dict[Kind, Stream], report: Report, delays: Callable[[int], float]):
        self.url = url
        self.shown = redact_url(url)
        self.templates = templates
        self.report = report
        self.delays = delays
        self.queue: queue.Queue[StreamPacket | None] = queue.Queue(_RTMP_QUEUE)
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roomtape-rtmp", daemon=True)
        self._thread.start()

    def offer(self, item: StreamPacket) -> None:
        try:
            self.queue.put_nowait(item)
        except queue.Full:  # the receiver is slow or the connection blocks: live media is dropped
            self.dropped += 1

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        try:
            self.queue.put(None, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            carried = False
            try:
                carried = self._session(attempt)
                if self._stop.is_set():
                    return
                raise OSError("connection ended")
            except (av.FFmpegError, OSError, ValueError) as exc:
                if self._stop.is_set():
                    return
                attempt = 1 if carried else attempt + 1
                delay = self.delays(attempt)
                error = str(exc).replace(self.url, self.shown)[:300]  # FFmpeg's errors name the URL (its key)
                log.warning("rtmp %s: %s; retrying in %.0f s", self.shown, error, delay)
                self.report(
                    {"output": "rtmp", "state": "retrying", "error": error, "attempt": attempt, "retry_in": delay}
                )
                self._drain_for(delay)

    def _drain_for(self, seconds: float) -> None:
        """Wait, dropping what the render queues meanwhile (a live stream has no backlog)."""
        until = time.monotonic() + seconds
        while not self._stop.is_set():
            left = until - time.monotonic()
            if left <= 0:
                return
            try:
                if self.queue.get(timeout=min(left, 0.2)) is None:
                    return
            except queue.Empty:
                pass

    def _session(self, attempt: int) -> bool:
        """One connection: wait for a keyframe, connect, mux until an error. True if any media went out."""
        first = self._next_keyframe()
        if first is None:
            return False
        container: OutputContainer = av.open(self.url, "w", format="flv")
        carried = False
        try:
            streams = _add_streams(container, self.templates)
            offset = first.seconds()
            item: StreamPacket | None = first
            while item is not None:
                if item.kind == "audio" and item.seconds() < offset:
                    item = self._get()
                    continue
                container.mux(item.packet(streams[item.kind], offset))  # the first one connects and publishes
                if not carried:
                    carried = True
                    log.info("rtmp %s: pushing", self.shown)
                    self.report({"output": "rtmp", "state": "live", "attempt": attempt})
                item = self._get()
        finally:
            try:
                container.close()
            except (av.FFmpegError, OSError):
                pass
        return carried

    def _get(self) -> StreamPacket | None:
        while not self._stop.is_set():
            try:
                return self.queue.get(timeout=0.5)
            except queue.Empty:
                continue
        return None

    def _next_keyframe(self) -> StreamPacket | None:
        while True:
            item = self._get()
            if item is None or (item.kind == "video" and item.keyframe):
                return item


class StreamOutputs:
    """The HLS and RTMP outputs of one live render (see the module docstring).

    Args:
        hls_dir: Where to write ``index.m3u8`` and the segments (None: no HLS).
        rtmp_url: Where to push (None: no push).
        report: Called with each state change (render or RTMP thread).
        hls_segment_seconds: Target segment duration (segments end at keyframes).
        hls_list_size: Segments in the rolling playlist.
        backoff: Delay before reconnect attempt n (tests shorten it).
    """

    def __init__(
        self,
        hls_dir: Path | None,
        rtmp_url: str | None,
        report: Report,
        *,
        hls_segment_seconds: float = 2.0,
        hls_list_size: int = 6,
        backoff: Callable[[int], float] | None = None,
    ) -> None:
        self.hls_dir = hls_dir
        self.rtmp_url = rtmp_url
        self._report = report
        self._segment_seconds = hls_segment_seconds
        self._list_size = hls_list_size
        self._backoff = backoff or backoff_delays()
        self._hls: _Hls | None = None
        self._rtmp: _Rtmp | None = None
        self._opened = False

    def open(self, video: Stream | None, audio: Stream) -> None:
        """Create the outputs from the render's encoder streams (called once their parameters are final)."""
        templates: dict[Kind, Stream] = {"audio": audio}
        if video is not None:
            templates = {"video": video, "audio": audio}
        self._opened = True
        if self.hls_dir is not None:
            self._hls = _Hls(self.hls_dir, templates, self._segment_seconds, self._list_size)
        if self.rtmp_url is not None:
            self._rtmp = _Rtmp(self.rtmp_url, templates, self._report, self._backoff)
            self._report({"output": "rtmp", "state": "connecting"})

    @property
    def opened(self) -> bool:
        """Whether `open` ran."""
        return self._opened

    def send(self, item: StreamPacket) -> None:
        """Mux one packet into HLS (here) and queue it for RTMP."""
        if self._hls is not None and self._hls.mux(item):
            self._report({"output": "hls", "state": "live", "playlist": str(self._hls.playlist)})
        if self._rtmp is not None:
            self._rtmp.offer(item)

    def close(self) -> dict[str, Any]:
        """Finish HLS (the playlist gets its end tag) and the push; returns figures for the result line."""
        done: dict[str, Any] = {}
        if self._hls is not None:
            self._hls.close()
            done["hls"] = str(self._hls.playlist)
        if self._rtmp is not None:
            self._rtmp.close()
            done["rtmp_dropped_packets"] = self._rtmp.dropped
        return done

    def abort(self) -> None:
        """Close without caring for errors (the render failed)."""
        for close in (self._hls.close if self._hls else None, self._rtmp.close if self._rtmp else None):
            if close is not None:
                try:
                    close()
                except (av.FFmpegError, OSError):
                    log.debug("closing a stream output failed", exc_info=True)


def env_backoff() -> Callable[[int], float] | None:
    """A backoff from ``ROOMTAPE_RTMP_BACKOFF_SCALE`` (tests shorten the waits), or None for the default."""
    scale = os.environ.get("ROOMTAPE_RTMP_BACKOFF_SCALE")
    if not scale:
        return None
    return backoff_delays(_BACKOFF_FIRST * float(scale), _BACKOFF_MAX * float(scale))
