"""Render speed of the meeting composite: roomtape's composer vs the ffmpeg command line.

Two participants publish 640x480 30 fps VP8 (textured, moving) and Opus tones for ``--seconds``; the
real track recorder writes their segment files and manifests. Then, in this process tree:

- ``roomtape``: ``compose()`` renders a 640x480 30 fps grid to MP4 (H.264 veryfast crf 23 / AAC 128k).
- ``ffmpeg``: the same layout with the ``ffmpeg`` CLI (``scale``+``pad``+``hstack``, ``amix``, same 2 s GOP and
  encoder settings) on the same files, if ``ffmpeg`` is installed (Debian: ``apt-get install ffmpeg``).

It prints the ratio of render time to media duration (below 1 is faster than real time), CPU-seconds per
media-second, and roomtape's time relative to ffmpeg's, and writes ``bench/results/composite_render.json``.
Run: ``.venv/bin/python bench/composite_render.py [--seconds 60]``.
"""

from __future__ import annotations

import argparse
import json
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

from roomtape.recording.composer import ComposeOptions, compose
from roomtape.recording.frame import EncodedFrame
from roomtape.recording.segmenter import TrackRecorder

WIDTH, HEIGHT, FPS = 640, 480, 30
LOOP_FRAMES = 150  # 5 s of encoded video, looped (frame 0 is a keyframe)
T0 = 1_700_000_000.0
SESSION = "bench"


def encode_video(seed: int) -> list[tuple[bytes, bool]]:
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = Fraction(1, FPS)
    ctx.gop_size = 60
    ctx.bit_rate = 1_500_000
    ctx.thread_count = 1
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 255, (HEIGHT * 2, WIDTH * 2, 3), dtype=np.uint8)
    out: list[tuple[bytes, bool]] = []
    for i in range(LOOP_FRAMES):
        y, x = (i * 3) % HEIGHT, (i * 5) % WIDTH
        img = np.ascontiguousarray(texture[y : y + HEIGHT, x : x + WIDTH])
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    return out


def encode_audio(freq: float, seconds: float) -> list[bytes]:
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48000, "stereo", "s16"
    ctx.time_base = Fraction(1, 48000)
    ctx.options = {"frame_duration": "20"}
    count = round(seconds * 50)
    t = np.arange(960 * (count + 2)) / 48000
    pcm = (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)
    out: list[bytes] = []
    for i in range(count + 2):
        chunk = pcm[i * 960 : (i + 1) * 960]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out[:count]


def make_tracks(base: Path, seconds: float) -> None:
    for n, (pid, freq) in enumerate((("alice", 440.0), ("bob", 1000.0))):
        video = encode_video(n)
        recorder = TrackRecorder(base, SESSION, pid, "video")
        for i in range(round(seconds * FPS)):
            data, key = video[i % LOOP_FRAMES]
            recorder.write(EncodedFrame(data, i * 3000 % (1 << 32), 90000, key, T0 + i / FPS, "vp8"))
        recorder.close()
        recorder = TrackRecorder(base, SESSION, pid, "audio")
        for i, data in enumerate(encode_audio(freq, seconds)):
            recorder.write(EncodedFrame(data, i * 960 % (1 << 32), 48000, True, T0 + i * 0.02, "opus"))
        recorder.close()


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_roomtape(base: Path, seconds: float, out: Path) -> dict[str, float]:
    options = ComposeOptions(width=WIDTH, height=HEIGHT, fps=FPS, preset="veryfast", video_crf=23)
    spans = [(int(T0 * 1000), int(T0 * 1000) + round(seconds * 1000))]
    wall, cpu = time.perf_counter(), cpu_self()
    result = compose(base, spans, options, out)
    wall, cpu = time.perf_counter() - wall, cpu_self() - cpu
    return {"wall_seconds": wall, "cpu_seconds": cpu, "size_bytes": result.size_bytes}


def run_ffmpeg(base: Path, seconds: float, out: Path) -> dict[str, float | str] | None:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        return None
    files = {
        (pid, kind): next((base / SESSION / pid / kind).glob("*.webm"))
        for pid in ("alice", "bob")
        for kind in ("video", "audio")
    }
    cell = "scale=318:478:force_original_aspect_ratio=decrease,pad=320:480:(ow-iw)/2:(oh-ih)/2:color=black"
    graph = f"[0:v]{cell}[a];[1:v]{cell}[b];[a][b]hstack,fps={FPS}[v];[2:a][3:a]amix=inputs=2:normalize=0[m]"
    cmd = [ffmpeg, "-v", "error", "-y"]
    for key in (("alice", "video"), ("bob", "video"), ("alice", "audio"), ("bob", "audio")):
        cmd += ["-i", str(files[key])]
    cmd += ["-filter_complex", graph, "-map", "[v]", "-map", "[m]", "-t", str(seconds)]
    cmd += ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-g", str(2 * FPS), "-pix_fmt", "yuv420p"]
    cmd += ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-movflags", "+faststart", str(out)]
    wall, cpu = time.perf_counter(), cpu_children()
    subprocess.run(cmd, check=True)
    wall, cpu = time.perf_counter() - wall, cpu_children() - cpu
    version = subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    return {"wall_seconds": wall, "cpu_seconds": cpu, "size_bytes": out.stat().st_size, "version": version}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "composite_render.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="roomtape-bench-") as tmp:
        base = Path(tmp)
        made = time.perf_counter()
        make_tracks(base, args.seconds)
        print(f"tracks written in {time.perf_counter() - made:.1f} s", flush=True)
        ours = run_roomtape(base, args.seconds, base / "roomtape.mp4")
        theirs = run_ffmpeg(base, args.seconds, base / "ffmpeg.mp4")

    media = args.seconds
    result: dict[str, object] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "pyav": av.__version__},
        "load_average_at_end": os.getloadavg(),
        "scenario": f"2 participants, VP8 {WIDTH}x{HEIGHT} {FPS} fps + Opus, {media:g} s -> grid MP4 H.264/AAC",
        "media_seconds": media,
        "roomtape": {
            **ours,
            "render_to_media_ratio": ours["wall_seconds"] / media,
            "cpu_seconds_per_media_second": ours["cpu_seconds"] / media,
        },
    }
    print(f"roomtape: {ours['wall_seconds']:.2f} s wall, {ours['cpu_seconds']:.2f} s CPU for {media:g} s of media")
    print(f"  render/media ratio {ours['wall_seconds'] / media:.3f} (real time = 1)")
    print(f"  CPU-seconds per media-second {ours['cpu_seconds'] / media:.3f}")
    if theirs is not None:
        wall_ff, cpu_ff = float(theirs["wall_seconds"]), float(theirs["cpu_seconds"])
        result["ffmpeg"] = {
            **theirs,
            "render_to_media_ratio": wall_ff / media,
            "cpu_seconds_per_media_second": cpu_ff / media,
        }
        result["roomtape_vs_ffmpeg_wall"] = ours["wall_seconds"] / wall_ff
        result["roomtape_vs_ffmpeg_cpu"] = ours["cpu_seconds"] / cpu_ff
        print(f"ffmpeg:   {wall_ff:.2f} s wall, {cpu_ff:.2f} s CPU (render/media {wall_ff / media:.3f})")
        print(f"roomtape / ffmpeg: wall {ours['wall_seconds'] / wall_ff:.2f}x, CPU {ours['cpu_seconds'] / cpu_ff:.2f}x")
    else:
        print("ffmpeg not installed: baseline is real time only")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
