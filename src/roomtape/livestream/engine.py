"""The livestream engine: a meeting's live render streamed as HLS (and optionally pushed to RTMP), no recording needed.

One `LivestreamEngine` per server process, beside the recording service (``ctx.livestreams``, made in the app's
lifespan). It runs on the node that holds the meeting's room, like the recording service: the API layer
(``livestreams`` endpoints, rows, statuses, webhooks, signed HLS URLs) calls it there.

Interface (stable; the API side codes against it):

- ``await engine.start(*, livestream_id, app_id, meeting_id, hls_dir, rtmp_url, width, height, on_status,
  fps=30, preset="superfast")`` starts streaming the meeting's live session. It returns once the stream is
  running (not yet LIVE). It raises, with nothing left started:

  - `NoLiveRoom` (a `~roomtape.errors.Conflict`): the meeting has no live room in this process;
  - `AlreadyStreaming` (a `~roomtape.errors.Conflict`): the meeting, or this ``livestream_id``, streams already;
  - `~roomtape.errors.InvalidInput`: bad ``width``/``height``/``fps``, or an ``rtmp_url`` that is not
    ``rtmp://`` or ``rtmps://`` with a host;
  - `RtmpUnreachable` (an `~roomtape.errors.InvalidInput`): nothing accepts a TCP connection at the RTMP URL's
    host and port (1935 for rtmp, 443 for rtmps by default) within 5 s. The engine connects to whatever host
    the URL names: the caller checks outbound safety (private addresses) before;
  - `LivestreamError` (a `~roomtape.errors.RoomtapeError`): the render process could not be started.

- ``on_status(status, reason)`` (awaited, in order, one at a time, never concurrently for one stream):
  ``("LIVE", None)`` once the first HLS segment is listed in ``hls_dir/index.m3u8``; ``("ERRORED", reason)``
  if the render fails for good (the stream is then over: its tap is stopped and its files removed);
  ``("IDLE", None)`` after `stop` (or after the meeting's session ended), once the playlist has its end tag.
  A dead RTMP receiver is not an error: the push is retried with backoff (1, 2, 4 ... 30 s) while HLS goes on;
  its state is in `LivestreamEngine.rtmp_state`.
- ``await engine.stop(livestream_id)``: renders up to now, closes HLS (``#EXT-X-ENDLIST``) and the push, stops
  the tap and removes its files; then ``on_status("IDLE", None)``. Unknown or stopped ids: a no-op.
- ``engine.active(meeting_id) -> str | None``: the livestream id streaming the meeting, if any.
- ``engine.rtmp_state(livestream_id) -> dict | None``: the push's latest state (``{"state": "connecting" |
  "live" | "retrying", "error"?, "attempt"?, "retry_in"?}``), None without a push.

``hls_dir`` belongs to the caller: the engine writes ``index.m3u8`` and ``segNNNNN.ts`` (2 s segments, a rolling
playlist of the last 6, older segments deleted) and leaves the directory in place at the end. The tracks are
tapped into ``{data_dir}/livestreams/{livestream_id}/`` (`RecordingService.start_tap`: files like a composite
recording's, but no recording), followed by the live render process (``python -m roomtape.recording.live``,
H.264/AAC encoded once, muxed into HLS and RTMP; `roomtape.livestream.outputs`); the directory is deleted when
the stream ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from roomtape.errors import Conflict, InvalidInput, RoomtapeError
from roomtape.media.plane import LiveRoom, MediaPlane
from roomtape.recording.compose.feed import LiveControl
from roomtape.recording.compose.options import ComposeOptions
from roomtape.recording.live import LiveRender
from roomtape.recording.service import RecordingService
from roomtape.webhooks.outbound import rtmp_host_port

__all__ = [
    "AlreadyStreaming",
    "LivestreamEngine",
    "LivestreamError",
    "NoLiveRoom",
    "OnStatus",
    "RtmpUnreachable",
    "Status",
    "livestreams_root",
    "probe_rtmp",
]

log = logging.getLogger(__name__)

Status = Literal["LIVE", "IDLE", "ERRORED"]
OnStatus = Callable[[str, str | None], Awaitable[None]]

_PROBE_TIMEOUT: Final = 5.0
_STOP_TIMEOUT: Final = 60.0  # seconds a stopping render may take to render its last seconds and close


class LivestreamError(RoomtapeError):
    """The live stream could not be started."""


class NoLiveRoom(Conflict):
    """The meeting has no live session on this node."""


class AlreadyStreaming(Conflict):
    """The meeting (or the livestream id) is streaming already."""


class RtmpUnreachable(InvalidInput):
    """Nothing accepts connections at the RTMP URL's host and port."""


def livestreams_root(data_dir: Path) -> Path:
    """Where livestream taps write their track files: ``{data_dir}/livestreams``."""
    return data_dir / "livestreams"


async def probe_rtmp(url: str) -> None:
    """Check that the RTMP URL's host accepts a TCP connection (within 5 s).

    Raises:
        InvalidInput: The URL is not an RTMP URL.
        RtmpUnreachable: Connection refused, unknown host, or no answer in time.
    """
    host, port = rtmp_host_port(url)
    timeout = _PROBE_TIMEOUT
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except TimeoutError:
        raise RtmpUnreachable(f"RTMP server {host}:{port} did not answer within {timeout:g} s") from None
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise RtmpUnreachable(f"RTMP server {host}:{port} is unreachable: {reason}") from None
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


@dataclass(eq=False)
class _Stream:
    livestream_id: str
    meeting_id: str
    app_id: str
    tap_dir: Path
    hls_dir: Path
    started_ms: int
    on_status: OnStatus
    render: LiveRender | None = None
    status: str = "INVOKED"
    rtmp: dict[str, Any] | None = None
    stopping: bool = False
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    events: asyncio.Queue[tuple[str, str | None]] = field(default_factory=asyncio.Queue)
    notifier: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None


class LivestreamEngine:
    """Live streams of this process's rooms (see the module docstring for the interface).

    Args:
        service: The recording service (it taps the tracks).
        media: The media plane (a room's end stops its stream).
        data_dir: The server's data directory (taps go to ``{data_dir}/livestreams/{id}``).
        lag: Seconds behind the wall clock the live render stays (every frame up to there is on disk).
        presence_grace_ms: How long a tile stays across a gap in its media (the render also waits that long
            for new segments: part of the glass-to-HLS latency).
    """

    def __init__(
        self,
        service: RecordingService,
        media: MediaPlane,
        data_dir: Path,
        *,
        lag: float = 1.5,
        presence_grace_ms: int = 1000,
    ) -> None:
        self.service = service
        self.media = media
        self.data_dir = data_dir
        self.lag = lag
        self.presence_grace_ms = presence_grace_ms
        self._streams: dict[str, _Stream] = {}
        self._by_meeting: dict[str, str] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closing = False
        media.on_room_closing(self._room_closing)

    # -- the interface ------------------------------------------------------------------------------------
    async def start(
        self,
        *,
        livestream_id: str,
        app_id: str,
        meeting_id: str,
        hls_dir: Path,
        rtmp_url: str | None,
        width: int,
        height: int,
        on_status: OnStatus,
        fps: int = 30,
        preset: str = "superfast",
    ) -> None:
        """Start streaming the meeting's live session (see the module docstring for what it raises)."""
        options = ComposeOptions(
            layout="grid",
            format="mp4",
            width=width,
            height=height,
            fps=fps,
            preset=preset,
            presence_grace_ms=self.presence_grace_ms,
        )
        options.validate()
        if width > 3840 or height > 2160:
            raise InvalidInput(f"a livestream is at most 3840x2160, got {width}x{height}")
        if self._closing:
            raise LivestreamError("the server is shutting down")
        async with self._lock:
            if livestream_id in self._streams:
                raise AlreadyStreaming(f"livestream {livestream_id} is running already")
            running = self._by_meeting.get(meeting_id)
            if running is not None:
                raise AlreadyStreaming(f"meeting {meeting_id} is live-streamed already (livestream {running})")
            live = self.media.get(meeting_id)
            if live is None:
                raise NoLiveRoom(f"meeting {meeting_id} has no live session: start the livestream once someone joined")
            if rtmp_url is not None:
                await probe_rtmp(rtmp_url)
            tap_dir = livestreams_root(self.data_dir) / livestream_id
            stream = _Stream(
                livestream_id=livestream_id,
                meeting_id=meeting_id,
                app_id=app_id,
                tap_dir=tap_dir,
                hls_dir=hls_dir,
                started_ms=round(time.time() * 1000),
                on_status=on_status,
            )
            try:
                await asyncio.to_thread(_fresh_dir, tap_dir)
                await asyncio.to_thread(hls_dir.mkdir, parents=True, exist_ok=True)
                await self.service.start_tap(livestream_id, meeting_id, tap_dir)
            except Conflict as exc:
                await asyncio.to_thread(shutil.rmtree, tap_dir, True)
                raise NoLiveRoom(str(exc)) from None
            except OSError as exc:
                await asyncio.to_thread(shutil.rmtree, tap_dir, True)
                raise LivestreamError(f"livestream {livestream_id} could not start: {exc}") from None
            try:
                stream.render = await LiveRender.start(
                    livestream_id,
                    tap_dir,
                    None,
                    options,
                    LiveControl(stream.started_ms, []),
                    lag=self.lag,
                    hls_dir=hls_dir,
                    rtmp_url=rtmp_url,
                    on_stream=lambda state: self._on_output(stream, state),
                )
            except OSError as exc:
                await self.service.stop_tap(livestream_id)
                await asyncio.to_thread(shutil.rmtree, tap_dir, True)
                raise LivestreamError(f"livestream {livestream_id}: the render could not start: {exc}") from None
            if rtmp_url is not None:
                stream.rtmp = {"state": "connecting"}
            self._streams[livestream_id] = stream
            self._by_meeting[meeting_id] = livestream_id
            stream.notifier = asyncio.ensure_future(self._notify(stream))
            stream.watcher = asyncio.ensure_future(self._watch(stream))
        log.info(
            "livestream %s: meeting %s (session %s) streamed %dx%d",
            livestream_id,
            meeting_id,
            live.session_id,
            width,
            height,
        )

    async def stop(self, livestream_id: str) -> None:
        """Stop a stream: the last seconds are rendered, HLS gets its end tag, the tap's files are removed."""
        stream = self._streams.get(livestream_id)
        if stream is None or stream.stopping:
            if stream is not None:
                await stream.ended.wait()
            return
        stream.stopping = True
        end_ms = round(time.time() * 1000)
        await self.service.stop_tap(livestream_id)  # every segment closed: the render reads to their real ends
        render = stream.render
        if render is not None:
            try:
                await asyncio.wait_for(
                    render.finish([(stream.started_ms, end_ms)], stream.started_ms, []), _STOP_TIMEOUT
                )
            except (RuntimeError, TimeoutError) as exc:
                log.warning("livestream %s: the render did not end cleanly: %s", livestream_id, exc)
                await render.cancel()
        await self._end(stream, "IDLE", None)  # a render that did not close cleanly still ended: IDLE

    def active(self, meeting_id: str) -> str | None:
        """The livestream id streaming the meeting, if any."""
        return self._by_meeting.get(meeting_id)

    def rtmp_state(self, livestream_id: str) -> dict[str, Any] | None:
        """The RTMP push's latest state (None: no such stream, or no push)."""
        stream = self._streams.get(livestream_id)
        return dict(stream.rtmp) if stream is not None and stream.rtmp is not None else None

    def status(self, livestream_id: str) -> str | None:
        """The stream's status as the engine last reported it (``INVOKED`` before LIVE), None if not running."""
        stream = self._streams.get(livestream_id)
        return stream.status if stream is not None else None

    async def aclose(self) -> None:
        """Stop every stream (server shutdown)."""
        self._closing = True
        await asyncio.gather(*(self.stop(i) for i in list(self._streams)), return_exceptions=True)
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task

    # -- internals -----------------------------------------------------------------------------------------
    def _on_output(self, stream: _Stream, state: dict[str, Any]) -> None:
        """A ``stream`` line of the render process (event loop)."""
        output = state.get("output")
        if output == "hls" and state.get("state") == "live" and stream.status == "INVOKED":
            stream.status = "LIVE"
            stream.events.put_nowait(("LIVE", None))
        elif output == "rtmp":
            stream.rtmp = {k: v for k, v in state.items() if k != "output"}

    async def _notify(self, stream: _Stream) -> None:
        """Hand the status changes to ``on_status`` one at a time, in order."""
        while True:
            status, reason = await stream.events.get()
            try:
                await stream.on_status(status, reason)
            except Exception:
                log.exception("livestream %s: on_status(%s) failed", stream.livestream_id, status)
            if status in ("IDLE", "ERRORED"):
                return

    async def _watch(self, stream: _Stream) -> None:
        """End the stream as ERRORED if its render process exits by itself."""
        render = stream.render
        assert render is not None
        code = await render.process.wait()
        if stream.stopping:
            return
        stream.stopping = True
        log.error("livestream %s: the live render exited with %s", stream.livestream_id, code)
        await self.service.stop_tap(stream.livestream_id)
        await self._end(stream, "ERRORED", f"the live render exited with code {code}")

    async def _end(self, stream: _Stream, status: Status, reason: str | None) -> None:
        stream.status = status
        self._streams.pop(stream.livestream_id, None)
        if self._by_meeting.get(stream.meeting_id) == stream.livestream_id:
            del self._by_meeting[stream.meeting_id]
        await asyncio.to_thread(shutil.rmtree, stream.tap_dir, True)
        stream.events.put_nowait((status, reason))
        if stream.notifier is not None:
            with contextlib.suppress(BaseException):
                await stream.notifier
        stream.ended.set()

    def _room_closing(self, live: LiveRoom) -> None:
        livestream_id = self._by_meeting.get(live.meeting_id)
        if livestream_id is not None:
            task = asyncio.ensure_future(self.stop(livestream_id))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def _fresh_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
