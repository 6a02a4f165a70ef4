import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av

from roomtape.recording.frame import VIDEO_CODECS, CodecName
from roomtape.recording.writer import open_webm

__all__ = ["RepairError", "RepairResult", "needs_repair", "repair"]

log = logging.getLogger(__name__)


class RepairError(Exception):
    """A track file is too damaged to recover anything (no readable header or stream)."""


@dataclass(frozen=True, slots=True)
class RepairResult:
    """What `repair()` kept."""

    path: Path
    """The finalized file."""
    frames: int
    """Frames kept."""
    duration_seconds: float
    """Media time kept, from the first frame to the end of the last."""
    bytes: int
    """Size of the finalized file."""


def needs_repair(path: Path) -> bool:
    """Tell whether a track file was left half-written (no duration: the trailer never came).

    Args:
        path: A WebM file written by `TrackWriter`.

    Returns:
        True if the file has no known duration or cannot be opened at all.
    """
    try:
        with av.open(str(path)) as container:
            return container.duration is None
    except (av.FFmpegError, OSError):
        return True


def repair(path: Path, output: Path | None = None) -> RepairResult:
    """Remux the readable part of a half-written WebM into a finalized file, without decoding.

    A writer killed mid-file leaves an EBML header, a segment of unknown size and the clusters
    it had flushed, but no cues and no duration. This copies every packet that can be read, up
    to the first damaged one, into a new file with the same codec parameters (including Opus's
    `OpusHead`) and then a proper trailer.

    Args:
        path: The damaged file.
        output: Where to write the finalized file; defaults to replacing `path` (atomically,
            through a temporary file beside it).

    Returns:
        What was kept.

    Raises:
        RepairError: If the file has no readable header or no audio/video stream.
    """
    target = output if output is not None else path
    tmp = target.with_name(target.name + ".repair.tmp")
    try:
        source = av.open(str(path))
    except (av.FFmpegError, OSError) as exc:
        raise RepairError(f"{path}: unreadable header: {exc}") from exc
    with source:
        candidates = [s for s in source.streams if s.type in ("audio", "video")]
        if not candidates:
            raise RepairError(f"{path}: no audio or video stream")
        in_stream = candidates[0]
        codec_name = in_stream.codec_context.name
        if codec_name not in VIDEO_CODECS and codec_name != "opus":
            raise RepairError(f"{path}: unexpected codec {codec_name!r}")
        codec = cast(CodecName, codec_name)
        ctx = in_stream.codec_context
        channels = getattr(ctx, "channels", 2) if codec == "opus" else 2
        container, out_stream = open_webm(
            tmp,
            codec,
            width=getattr(ctx, "width", 0),
            height=getattr(ctx, "height", 0),
            extradata=ctx.extradata,
            channels=channels,
        )
        frames = 0
        first: float | None = None
        end = 0.0
        last_dts: int | None = None
        try:
            with container:
                try:
                    for packet in source.demux(in_stream):
                        if packet.pts is None or packet.size == 0:
                            continue  # the demuxer's end-of-stream marker
                        if last_dts is not None and packet.pts <= last_dts:
                            continue
                        last_dts = packet.pts
                        tb = packet.time_base
                        start = float(packet.pts * tb)
                        if first is None:
                            first = start
                        end = start + float((packet.duration or 0) * tb)
                        packet.dts = packet.pts
                        packet.stream = out_stream
                        container.mux_one(packet)
                        frames += 1
                except (av.FFmpegError, EOFError) as exc:
                    # Expected for a killed writer: the tail cluster is cut short.
                    log.info("%s: stopped reading after %d frames: %s", path, frames, exc)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    os.replace(tmp, target)
    duration = end - first if first is not None else 0.0
    log.info("repaired %s: kept %d frames, %.3f s", target, frames, duration)
    return RepairResult(path=target, frames=frames, duration_seconds=duration, bytes=target.stat().st_size)
