"""The live composite: a process per recording renders it while it records (the live driver of the renderer).

The server starts it (`LiveRender.start`) once a composite recording is RECORDING; it runs
``python -m roomtape.recording.live`` with the recording's directory, output path and compose options. The
process follows the track files through a `~roomtape.recording.compose.feed.LiveFeed` and renders with the same
`~roomtape.recording.composer.Composer` as the render from files, in its own process so that neither the event
loop nor the media plane's thread shares a GIL with it. Pauses, resumes and the stop reach it through the
control file (`LiveRender.control`); at the stop the final spans do, and the process renders the rest, closes
the file and prints its result (`LiveRender.finish`). If it had fallen behind, it reads what is left from the
then closed files as fast as it can: nothing is dropped, and ``behind_at_stop_seconds`` says how far behind it
was. If it fails, the caller renders from the files as before.

The same process is the live stream's renderer (`roomtape.livestream`): with ``--hls DIR`` and/or
``--rtmp URL`` the encoded packets also go, unchanged, to an HLS playlist and segments and to an RTMP push
(`roomtape.livestream.outputs.StreamOutputs`: encoded once; a dead RTMP receiver is retried with backoff and
never stops the file or HLS); with ``-`` as the output path it writes no file (a livestream without a
recording). Live stream output needs the ``mp4`` format (H.264/AAC).

The process prints JSON lines on stdout: ``{"progress": {...}}`` about twice a second, ``{"stream": {...}}`` at
each live stream output's state change (``{"output": "hls", "state": "live", "playlist": ...}`` once the first
segment is listed; ``{"output": "rtmp", "state": "connecting" | "live" | "retrying", "error", "attempt",
"retry_in"}``) and ``{"done": {...}}`` at the end. It stops on its own if the server that started it goes away.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from roomtape.recording.compose.feed import LiveControl, write_control
from roomtape.recording.compose.options import ComposeOptions, ExportOptions

__all__ = ["LiveRender", "LiveResult", "main"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class LiveResult:
    """What a live render wrote."""

    size_bytes: int
    """Size of the composite file."""
    duration_seconds: float
    """Its media duration (the recorded spans)."""
    participants: list[str]
    """Participants with media inside the spans."""
    render_seconds: float
    """Wall time from the process's start to the file's close."""
    behind_at_stop_seconds: float
    """Media time that was left to render when the stop arrived (about the lag when it kept up)."""
    max_behind_seconds: float
    """The most media (seconds) that was ready but not rendered yet while the recording ran (0: it kept up)."""
    tail_seconds: float
    """Wall time from the stop's control update to the file's close."""
    export_size_bytes: int | None = None
    """Size of the separate audio file, if one was asked for."""


@dataclass
class LiveRender:
    """One running live render process (server side)."""

    recording_id: str
    directory: Path
    process: asyncio.subprocess.Process
    progress: dict[str, Any] = field(default_factory=dict)
    """Its latest progress line."""
    on_stream: Callable[[dict[str, Any]], None] | None = None
    """Called (on the event loop) with each ``stream`` line: a live stream output's state change."""
    _done: dict[str, Any] | None = None
    _reader: asyncio.Task[None] | None = None
    _final_at: float | None = None

    @classmethod
    async def start(
        cls,
        recording_id: str,
        directory: Path,
        out: Path | None,
        options: ComposeOptions,
        control: LiveControl,
        *,
        lag: float,
        hls_dir: Path | None = None,
        rtmp_url: str | None = None,
        on_stream: Callable[[dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> LiveRender:
        """Write the first control file and start the render process.

        Args:
            recording_id: The recording (for log lines), or the livestream.
            directory: The recording's local directory (track files, control file, output).
            out: The composite file to write; None: none (a livestream).
            options: What to render.
            control: When it started and its pauses so far.
            lag: Seconds behind the wall clock the render stays.
            hls_dir: Also write HLS there.
            rtmp_url: Also push to this RTMP/RTMPS URL.
            on_stream: Called with each stream output state change (see the module docstring).
            env: Extra environment variables of the process.
        """
        await asyncio.to_thread(write_control, directory, control)
        wanted = asdict(options)
        if options.export is not None:
            wanted["export"] = {"path": str(options.export.path), "format": options.export.format}
        wanted["fps"] = str(options.fps)
        extra: list[str] = []
        if hls_dir is not None:
            extra += ["--hls", str(hls_dir)]
        if rtmp_url is not None:
            # The URL carries the stream key: passed through the environment, not the (world-readable) argv.
            env = {**(env or {}), "ROOMTAPE_LIVE_RTMP_URL": rtmp_url}
            extra += ["--rtmp-from-env"]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "roomtape.recording.live",
            str(directory),
            str(out) if out is not None else "-",
            json.dumps(wanted),
            "--lag",
            str(lag),
            "--parent",
            str(os.getpid()),
            *extra,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env={**os.environ, **env} if env else None,
        )
        self = cls(recording_id, directory, process, on_stream=on_stream)
        self._reader = asyncio.ensure_future(self._read())
        log.info("recording %s: live composite render started (pid %d)", recording_id, process.pid)
        return self

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if "progress" in message:
                    self.progress = message["progress"]
                elif "stream" in message:
                    if self.on_stream is not None:
                        try:
                            self.on_stream(message["stream"])
                        except Exception:
                            log.exception("%s: stream status handler failed", self.recording_id)
                elif "done" in message:
                    self._done = message["done"]

    async def control(self, control: LiveControl) -> None:
        """Tell the process about a pause, a resume or (``final_spans``) the stop."""
        if control.final_spans is not None:
            self._final_at = time.monotonic()
        await asyncio.to_thread(write_control, self.directory, control)

    async def finish(self, spans: list[tuple[int, int]], started_ms: int, pauses: list[list[int | None]]) -> LiveResult:
        """Send the final spans and wait for the file.

        Raises:
            RuntimeError: The process failed (the caller renders from the files instead).
        """
        final = LiveControl(started_ms, pauses, [list(s) for s in spans])
        await self.control(final)
        code = await self.process.wait()
        if self._reader is not None:
            await self._reader
        if code != 0 or self._done is None:
            raise RuntimeError(f"live composite render exited with {code}")
        done = self._done
        return LiveResult(
            size_bytes=int(done["size_bytes"]),
            duration_seconds=float(done["duration_seconds"]),
            participants=list(done["participants"]),
            render_seconds=float(done["render_seconds"]),
            behind_at_stop_seconds=float(done["behind_at_stop_seconds"]),
            max_behind_seconds=float(done["max_behind_seconds"]),
            tail_seconds=time.monotonic() - (self._final_at or time.monotonic()),
            export_size_bytes=done.get("export_size_bytes"),
        )

    async def cancel(self) -> None:
        """Stop the process (its temporary file is removed by it, or by the next render)."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader


_print_lock = threading.Lock()


def _print(message: dict[str, Any]) -> None:
    line = json.dumps(message) + "\n"
    with _print_lock:  # the RTMP thread reports too
        sys.stdout.write(line)
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the render process (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m roomtape.recording.live", description=__doc__)
    parser.add_argument("directory", type=Path)
    parser.add_argument("out", help="the composite file, or - for none")
    parser.add_argument("options", help="JSON: the ComposeOptions fields")
    parser.add_argument("--lag", type=float, default=3.0)
    parser.add_argument("--parent", type=int, default=0, help="stop when this process is gone")
    parser.add_argument("--hls", type=Path, default=None, help="also write HLS into this directory")
    parser.add_argument("--rtmp-from-env", action="store_true", help="also push to $ROOMTAPE_LIVE_RTMP_URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="live-composite %(levelname)s %(message)s")

    import signal

    from roomtape.recording.compose.feed import LiveFeed
    from roomtape.recording.composer import ComposeCancelled, ComposeProgress, compose_live

    cancel = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: cancel.set())

    def orphaned() -> None:  # the server was killed: its restart renders from the files
        while not cancel.wait(1.0):
            if args.parent and os.getppid() != args.parent:
                log.warning("server %d is gone: live render stopped", args.parent)
                cancel.set()

    threading.Thread(target=orphaned, daemon=True).start()
    started = time.monotonic()
    fields = json.loads(args.options)
    export = fields.pop("export")
    options = ComposeOptions(
        **{
            **fields,
            "fps": Fraction(fields["fps"]),
            "session_ids": tuple(fields["session_ids"]),
            "export": ExportOptions(Path(export["path"]), export["format"]) if export else None,
        }
    )
    try:
        feed = LiveFeed(
            args.directory,
            options.session_ids,
            lag=args.lag,
            presence_grace_ms=options.presence_grace_ms,
            cancel=cancel,
        )
    except ComposeCancelled:
        return 2

    def progress(p: ComposeProgress) -> None:
        _print({"progress": {"media_seconds": round(p.media_seconds, 3), "final": feed.final}})

    rtmp_url = os.environ.get("ROOMTAPE_LIVE_RTMP_URL") if args.rtmp_from_env else None
    sink = None
    if args.hls is not None or rtmp_url:
        from roomtape.livestream.outputs import StreamOutputs, env_backoff

        sink = StreamOutputs(args.hls, rtmp_url, lambda state: _print({"stream": state}), backoff=env_backoff())
    out = None if args.out == "-" else Path(args.out)
    stream_done: dict[str, Any] = {}
    try:
        result = compose_live(feed, options, out, progress=progress, cancel=cancel, sink=sink)
    except ComposeCancelled:
        if sink is not None:
            sink.abort()
        return 2
    except BaseException:
        if sink is not None:
            sink.abort()
        raise
    if sink is not None:
        stream_done = sink.close()
    behind = feed.behind_at_stop_seconds or 0.0
    if behind > 2 * args.lag:
        log.warning("fell behind: %.1f s of media were left at the stop, rendered from the closed files", behind)
    _print(
        {
            "done": {
                "size_bytes": result.size_bytes,
                "duration_seconds": result.duration_seconds,
                "participants": list(result.participants),
                "render_seconds": time.monotonic() - started,
                "behind_at_stop_seconds": round(behind, 3),
                "max_behind_seconds": round(feed.max_behind_seconds, 3),
                "export_size_bytes": result.export.size_bytes if result.export is not None else None,
                **stream_done,
            }
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
