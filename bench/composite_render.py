"""Render speed of the meeting composite: roomtape's composer vs the ``ffmpeg`` command line, same inputs, same run.

``--participants`` (default 4) participants publish ``--input-size`` (default 1280x720) 30 fps VP8 (textured,
moving) and Opus tones for ``--seconds`` (default 600); the real track recorder writes their segment files and
manifests. The inputs are generated once and cached under ``--cache`` (default ``/tmp/roomtape-bench-composite``),
keyed by their parameters. Then, one after the other in this process tree:

- ``ffmpeg``: the grid with the ``ffmpeg`` CLI — ``scale``+``pad`` per tile, ``xstack``, ``fps``, ``amix`` — and
  libx264 ``--preset`` (veryfast) crf 23, 2 s GOP, AAC 128k (``aac_coder fast``, as
  roomtape), on the same files (Debian: ``apt-get install ffmpeg``);
- ``roomtape``: ``compose()`` renders the same ``--size`` (1280x720) 30 fps grid to MP4 with the same encoder
  settings;
- ``roomtape audio-only``: the same meeting as an audio-only AAC (m4a) composite, and ``ffmpeg``'s ``amix`` of the
  same four tracks to AAC for reference.

It prints render time / media time (below 1 is faster than real time), CPU-seconds per media-second, roomtape's
time relative to ffmpeg's and the audio-only speed in media-seconds per CPU-second ("x real time per core"), and
writes ``bench/results/composite_render.json``. The machine is shared: the load average before and after each
phase goes into the JSON. Run: ``.venv/bin/python bench/composite_render.py [--seconds 600] [--participants 4]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from roomtape.recording.compose.layout import arrange
from roomtape.recording.composer import ComposeOptions, compose
from roomtape.recording.frame import EncodedFrame
from roomtape.recording.segmenter import TrackRecorder

FPS = 30
LOOP_FRAMES = 150  # 5 s of encoded video, looped (frame 0 is a keyframe)
T0 = 1_700_000_000.0
SESSION = "bench"


def parse_size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def encode_video(seed: int, width: int, height: int) -> list[tuple[bytes, bool]]:
    ctx = av.CodecContext.create("libvpx", "w")
    assert isinstance(ctx, av.VideoCodecContext)
    ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.gop_size = 60
    ctx.bit_rate = 2_500_000 if width * height > 640 * 480 else 1_500_000
    ctx.thread_count = 1
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 255, (height * 2, width * 2, 3), dtype=np.uint8)
    out: list[tuple[bytes, bool]] = []
    for i in range(LOOP_FRAMES):
        y, x = (i * 3) % height, (i * 5) % width
        img = np.ascontiguousarray(texture[y : y + height, x : x + width])
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    return out


def encode_audio(freq: float, seconds: float) -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    assert isinstance(ctx, av.AudioCodecContext)
    ctx.sample_rate, ctx.layout, ctx.format = 48000, "stereo", "s16"
    ctx.time_base = Fraction(1, 48000)
    ctx.options = {"frame_duration": "20"}
    count = round(seconds * 50)
    out: list[bytes] = []
    for i in range(count + 2):
        t = np.arange(i * 960, (i + 1) * 960) / 48000
        chunk = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out[:count]


def participant_ids(n: int) -> list[str]:
    return [f"p{i}" for i in range(n)]


def make_tracks(base: Path, seconds: float, n: int, width: int, height: int) -> None:
    for i, pid in enumerate(participant_ids(n)):
        video = encode_video(i, width, height)
        recorder = TrackRecorder(base, SESSION, pid, "video")
        for k in range(round(seconds * FPS)):
            data, key = video[k % LOOP_FRAMES]
            recorder.write(EncodedFrame(data, k * 3000 % (1 << 32), 90000, key, T0 + k / FPS, "vp8"))
        recorder.close()
        recorder = TrackRecorder(base, SESSION, pid, "audio")
        for k, data in enumerate(encode_audio(300.0 + 170.0 * i, seconds)):
            recorder.write(EncodedFrame(data, k * 960 % (1 << 32), 48000, True, T0 + k * 0.02, "opus"))
        recorder.close()


def cached_tracks(cache: Path, seconds: float, n: int, width: int, height: int) -> Path:
    """The input track files, generated on the first run with these parameters."""
    base = cache / f"{n}p-{width}x{height}-{seconds:g}s"
    done = base / "complete"
    if not done.exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        made = time.perf_counter()
        make_tracks(base, seconds, n, width, height)
        done.write_text("ok\n")
        print(f"tracks written in {time.perf_counter() - made:.1f} s into {base}", flush=True)
    else:
        print(f"tracks from the cache: {base}", flush=True)
    return base


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def track_file(base: Path, pid: str, kind: str) -> Path:
    return next((base / SESSION / pid / kind).glob("*.webm"))


def run_roomtape(base: Path, seconds: float, options: ComposeOptions, out: Path) -> dict[str, object]:
    spans = [(int(T0 * 1000), int(T0 * 1000) + round(seconds * 1000))]
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), cpu_self()
    result = compose(base, spans, options, out)
    wall, cpu = time.perf_counter() - wall, cpu_self() - cpu
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "size_bytes": result.size_bytes,
        "output_duration_seconds": probe_duration(out),
        "load_average_before": load,
        "load_average_after": os.getloadavg()[0],
    }


def probe_duration(path: Path) -> float:
    with av.open(str(path)) as container:
        return float(container.duration or 0) / av.time_base


def ffmpeg_grid_command(
    ffmpeg: str, base: Path, seconds: float, n: int, size: tuple[int, int], preset: str, out: Path
) -> list[str]:
    """The grid with the ffmpeg CLI: each tile scaled into roomtape's cell (aspect kept, padded), xstack, amix."""
    width, height = size
    tiles = arrange(width, height, "grid", participant_ids(n), [])
    parts: list[str] = []
    positions: list[str] = []
    for i, tile in enumerate(tiles):
        r = tile.rect
        parts.append(
            f"[{i}:v]scale={r.w}:{r.h}:force_original_aspect_ratio=decrease:flags=area,"
            f"pad={r.w}:{r.h}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1[t{i}]"
        )
        positions.append(f"{r.x}_{r.y}")
    stack_inputs = "".join(f"[t{i}]" for i in range(n))
    parts.append(
        f"{stack_inputs}xstack=inputs={n}:layout={'|'.join(positions)}:fill=black,"
        f"pad={width}:{height}:0:0:color=black,fps={FPS}[v]"
    )
    audio_inputs = "".join(f"[{n + i}:a]" for i in range(n))
    parts.append(f"{audio_inputs}amix=inputs={n}:normalize=0[m]")
    cmd = [ffmpeg, "-v", "error", "-y"]
    for pid in participant_ids(n):
        cmd += ["-i", str(track_file(base, pid, "video"))]
    for pid in participant_ids(n):
        cmd += ["-i", str(track_file(base, pid, "audio"))]
    cmd += ["-filter_complex", ";".join(parts), "-map", "[v]", "-map", "[m]", "-t", f"{seconds:g}"]
    cmd += ["-c:v", "libx264", "-preset", preset, "-crf", "23", "-g", str(2 * FPS), "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "128k", "-ar", "48000", "-movflags", "+faststart", str(out)]
    return cmd


def ffmpeg_audio_command(ffmpeg: str, base: Path, seconds: float, n: int, out: Path) -> list[str]:
    cmd = [ffmpeg, "-v", "error", "-y"]
    for pid in participant_ids(n):
        cmd += ["-i", str(track_file(base, pid, "audio"))]
    graph = "".join(f"[{i}:a]" for i in range(n)) + f"amix=inputs={n}:normalize=0[m]"
    cmd += ["-filter_complex", graph, "-map", "[m]", "-t", f"{seconds:g}"]
    cmd += ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "128k", "-ar", "48000", str(out)]
    return cmd


def run_ffmpeg(cmd: list[str], out: Path) -> dict[str, object]:
    load = os.getloadavg()[0]
    wall, cpu = time.perf_counter(), cpu_children()
    subprocess.run(cmd, check=True)
    wall, cpu = time.perf_counter() - wall, cpu_children() - cpu
    return {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "size_bytes": out.stat().st_size,
        "output_duration_seconds": probe_duration(out),
        "load_average_before": load,
        "load_average_after": os.getloadavg()[0],
        "command": " ".join(cmd),
    }


def opus_decode_only(base: Path, n: int) -> dict[str, float]:
    """CPU time to decode the participants' Opus tracks alone (FFmpeg's decoder, as the composer uses it)."""
    cpu = cpu_self()
    seconds = 0.0
    for pid in participant_ids(n):
        with av.open(str(track_file(base, pid, "audio"))) as container:
            for frame in container.decode(audio=0):
                seconds += frame.samples / (frame.sample_rate or 48000)
    cpu = cpu_self() - cpu
    return {"track_seconds": seconds, "cpu_seconds": cpu, "track_seconds_per_cpu_second": seconds / cpu}


def per_media(run: dict[str, object], media: float) -> dict[str, object]:
    wall, cpu = float(run["wall_seconds"]), float(run["cpu_seconds"])  # type: ignore[arg-type]
    return {
        **run,
        "render_to_media_ratio": wall / media,
        "cpu_seconds_per_media_second": cpu / media,
        "media_seconds_per_cpu_second": media / cpu if cpu > 0 else math.inf,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--input-size", type=parse_size, default=(1280, 720), help="each participant's video")
    parser.add_argument("--size", type=parse_size, default=(1280, 720), help="the composite's picture")
    parser.add_argument("--preset", default="veryfast", help="libx264 preset of both renderers")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/roomtape-bench-composite"))
    parser.add_argument("--skip-video", action="store_true", help="audio-only phase only")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "composite_render.json")
    args = parser.parse_args()

    media, n = args.seconds, args.participants
    (in_w, in_h), (width, height) = args.input_size, args.size
    base = cached_tracks(args.cache, media, n, in_w, in_h)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("ffmpeg is not installed (Debian: apt-get install ffmpeg): no baseline to compare with")
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0]

    result: dict[str, object] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "pyav": av.__version__,
            "ffmpeg_cli": version,
            "load_average_at_start": os.getloadavg(),
        },
        "scenario": (
            f"{n} participants, VP8 {in_w}x{in_h} {FPS} fps + Opus, {media:g} s -> grid {width}x{height} {FPS} fps "
            f"MP4 (libx264 {args.preset} crf 23, AAC 128k); audio-only -> AAC (m4a)"
        ),
        "media_seconds": media,
    }
    with tempfile.TemporaryDirectory(prefix="roomtape-bench-out-") as tmp:
        out_dir = Path(tmp)
        if not args.skip_video:
            cmd = ffmpeg_grid_command(ffmpeg, base, media, n, (width, height), args.preset, out_dir / "ffmpeg.mp4")
            theirs = per_media(run_ffmpeg(cmd, out_dir / "ffmpeg.mp4"), media)
            print(f"ffmpeg grid:   {theirs['wall_seconds']:.1f} s wall, {theirs['cpu_seconds']:.1f} s CPU", flush=True)
            options = ComposeOptions(width=width, height=height, fps=FPS, preset=args.preset, video_crf=23)
            ours = per_media(run_roomtape(base, media, options, out_dir / "roomtape.mp4"), media)
            print(f"roomtape grid: {ours['wall_seconds']:.1f} s wall, {ours['cpu_seconds']:.1f} s CPU", flush=True)
            result["grid"] = {
                "roomtape": ours,
                "ffmpeg": theirs,
                "roomtape_vs_ffmpeg_wall": float(ours["wall_seconds"]) / float(theirs["wall_seconds"]),  # type: ignore[arg-type]
                "roomtape_vs_ffmpeg_cpu": float(ours["cpu_seconds"]) / float(theirs["cpu_seconds"]),  # type: ignore[arg-type]
                "target_roomtape_vs_ffmpeg_wall": 1.25,
            }
        audio_opts = ComposeOptions(format="aac", layout="audio_only")
        ours_a = per_media(run_roomtape(base, media, audio_opts, out_dir / "roomtape.m4a"), media)
        theirs_a = per_media(
            run_ffmpeg(ffmpeg_audio_command(ffmpeg, base, media, n, out_dir / "ffmpeg.m4a"), out_dir / "ffmpeg.m4a"),
            media,
        )
        print(
            f"audio-only:    roomtape {ours_a['media_seconds_per_cpu_second']:.0f}x real time per core, "
            f"ffmpeg amix {theirs_a['media_seconds_per_cpu_second']:.0f}x",
            flush=True,
        )
        decode = opus_decode_only(base, n)
        print(f"Opus decoding alone: {decode['track_seconds_per_cpu_second']:.0f}x real time per track", flush=True)
        result["audio_only"] = {
            "roomtape": ours_a,
            "ffmpeg": theirs_a,
            "opus_decode_only": decode,
            "target_media_seconds_per_cpu_second": 200,
        }
    result["load_average_at_end"] = os.getloadavg()
    if "grid" in result:
        grid = result["grid"]
        assert isinstance(grid, dict)
        wall_ratio, cpu_ratio = grid["roomtape_vs_ffmpeg_wall"], grid["roomtape_vs_ffmpeg_cpu"]
        print(f"roomtape / ffmpeg (grid): wall {wall_ratio:.2f}x, CPU {cpu_ratio:.2f}x")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
