"""Audio-only composites (voice sessions): roomtape's composer vs the ``ffmpeg`` command line, same inputs, same run.

``--participants`` (default 4) participants publish ``--seconds`` (default 120) of 20 ms Opus (stereo-coded tones,
a different pitch each: every packet carries sound, the decoder's worst case), written by the real track
recorder and cached under ``--cache``. Scenarios, each rendered by roomtape and by ``ffmpeg`` (``amerge`` for
one-participant-per-channel layouts, ``amix`` for mixes; same encoder and settings: libopus 128k
``application audio`` 20 ms frames, AAC 128k ``aac_coder fast``, libmp3lame 128k):

- ``agent_stereo_2p_ogg``: the agent-call layout (caller left, agent right) in Ogg Opus, roomtape's default
  (each participant's packets copied into its channel, no decoding: ``ComposeOptions.opus_passthrough``);
- ``agent_stereo_2p_ogg_reencoded``: the same with ``opus_passthrough=False`` (decode, place, re-encode);
- ``per_speaker_4p_ogg``: one channel per speaker, 4 participants, copied;
- ``stereo_mix_2p_ogg``, ``stereo_mix_4p_ogg``: everyone mixed (decode, mix, limit, encode Opus);
- ``stereo_mix_4p_m4a``: the same to AAC (m4a); ``mono_mix_2p_mp3``: a mono mix to MP3.

CPU time is ``getrusage`` of this process (roomtape) and of the ``ffmpeg`` children; each pair runs
``--repeats`` times interleaved and the least CPU of each side is kept (the machine is shared: the load average
goes into the JSON). "x real time per core" is media seconds per CPU second. A separate cProfile run per
scenario gives where roomtape's time goes. Also measured: FFmpeg's Opus decoder and libopus/AAC/MP3 encoders
alone, the floor of any decode-and-encode composite.

Run: ``.venv/bin/python bench/audio_composite.py [--seconds 120] [--repeats 3]``; writes
``bench/results/audio_composite.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from composite_render import SESSION, T0, cpu_children, cpu_self, encode_audio, probe_duration

from roomtape.recording.composer import ComposeOptions, compose
from roomtape.recording.frame import EncodedFrame
from roomtape.recording.segmenter import TrackRecorder

OPUS_ARGS = ["-c:a", "libopus", "-b:a", "128k", "-application", "audio", "-frame_duration", "20"]
AAC_ARGS = ["-c:a", "aac", "-aac_coder", "fast", "-b:a", "128k", "-ar", "48000"]
MP3_ARGS = ["-c:a", "libmp3lame", "-b:a", "128k", "-ar", "48000"]
DOWNMIX = "pan=mono|c0=0.5*c0+0.5*c1"  # the composer's mono downmix of a stereo-decoded track


@dataclass(frozen=True)
class Scenario:
    name: str
    participants: int
    options: ComposeOptions
    suffix: str
    ffmpeg_graph: str
    ffmpeg_codec: list[str]


def scenarios() -> list[Scenario]:
    def merge(n: int) -> str:
        inputs = ";".join(f"[{i}:a]{DOWNMIX}[c{i}]" for i in range(n))
        # libopus takes 4 channels only in a Vorbis layout (quad), not amerge's 4.0
        layout = ",aformat=channel_layouts=quad" if n == 4 else ""
        return f"{inputs};{''.join(f'[c{i}]' for i in range(n))}amerge=inputs={n}{layout}[m]"

    def mix(n: int, mono: bool = False) -> str:
        graph = "".join(f"[{i}:a]" for i in range(n)) + f"amix=inputs={n}:normalize=0"
        return graph + ("," + DOWNMIX if mono else "") + "[m]"

    agent = {"channels": "agent_stereo", "agent_participant_id": "p1"}
    return [
        Scenario("agent_stereo_2p_ogg", 2, ComposeOptions(format="ogg", **agent), "ogg", merge(2), OPUS_ARGS),  # type: ignore[arg-type]
        Scenario(
            "agent_stereo_2p_ogg_reencoded",
            2,
            ComposeOptions(format="ogg", opus_passthrough=False, **agent),  # type: ignore[arg-type]
            "ogg",
            merge(2),
            OPUS_ARGS,
        ),
        Scenario(
            "per_speaker_4p_ogg", 4, ComposeOptions(format="ogg", channels="per_speaker"), "ogg", merge(4), OPUS_ARGS
        ),
        Scenario("stereo_mix_2p_ogg", 2, ComposeOptions(format="ogg"), "ogg", mix(2), OPUS_ARGS),
        Scenario("stereo_mix_4p_ogg", 4, ComposeOptions(format="ogg"), "ogg", mix(4), OPUS_ARGS),
        Scenario("stereo_mix_4p_m4a", 4, ComposeOptions(format="aac"), "m4a", mix(4), AAC_ARGS),
        Scenario(
            "mono_mix_2p_mp3", 2, ComposeOptions(format="mp3", channels="mono"), "mp3", mix(2, mono=True), MP3_ARGS
        ),
    ]


def cached_tracks(cache: Path, seconds: float, n: int) -> Path:
    """Each participant's Opus track in its own recording directory (p0..p{n-1}), made on the first run."""
    base = cache / f"{n}p-audio-{seconds:g}s"
    if not (base / "complete").exists():
        shutil.rmtree(base, ignore_errors=True)
        for i in range(n):
            recorder = TrackRecorder(base, SESSION, f"p{i}", "audio")
            for k, data in enumerate(encode_audio(300.0 + 170.0 * i, seconds)):
                recorder.write(EncodedFrame(data, k * 960 % (1 << 32), 48000, True, T0 + k * 0.02, "opus"))
            recorder.close()
        (base / "complete").write_text("ok\n")
    return base


def subset(base: Path, n: int, root: Path) -> Path:
    """A recording directory holding the first n participants (symlinks into the cache)."""
    target = root / f"{n}p"
    if not target.exists():
        (target / SESSION).mkdir(parents=True)
        for i in range(n):
            (target / SESSION / f"p{i}").symlink_to(base / SESSION / f"p{i}")
    return target


def track_file(base: Path, i: int) -> Path:
    return next((base / SESSION / f"p{i}" / "audio").glob("*.webm"))


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_roomtape(base: Path, seconds: float, options: ComposeOptions, out: Path) -> tuple[float, float]:
    spans = [(int(T0 * 1000), int(T0 * 1000) + round(seconds * 1000))]
    cpu = cpu_self()
    compose(base, spans, options, out)
    return cpu_self() - cpu, probe_duration(out)


def profile_roomtape(base: Path, seconds: float, options: ComposeOptions, out: Path) -> list[str]:
    spans = [(int(T0 * 1000), int(T0 * 1000) + round(seconds * 1000))]
    profiler = cProfile.Profile(time.process_time)  # CPU time: wall time on this shared machine is mostly waiting
    profiler.enable()
    compose(base, spans, options, out)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(10)
    lines = [line.rstrip() for line in text.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("ncalls"))
    return [lines[0].strip(), *lines[start:]]


def ffmpeg_command(ffmpeg: str, base: Path, scenario: Scenario, seconds: float, out: Path) -> list[str]:
    cmd = [ffmpeg, "-v", "error", "-y"]
    for i in range(scenario.participants):
        cmd += ["-i", str(track_file(base, i))]
    cmd += ["-filter_complex", scenario.ffmpeg_graph, "-map", "[m]", "-t", f"{seconds:g}", *scenario.ffmpeg_codec]
    return [*cmd, str(out)]


def run_ffmpeg(cmd: list[str], out: Path) -> tuple[float, float]:
    cpu = cpu_children()
    subprocess.run(cmd, check=True)
    return cpu_children() - cpu, probe_duration(out)


def decode_alone(path: Path, seconds: float) -> float:
    """Media seconds per CPU second of FFmpeg's Opus decoder on one track (demuxing included)."""
    cpu = cpu_self()
    with av.open(str(path)) as container:
        for _ in container.decode(audio=0):
            pass
    return seconds / (cpu_self() - cpu)


def encode_alone(codec: str, seconds: float, options: dict[str, str], channels: int = 2) -> float:
    """Media seconds per CPU second of one encoder (PyAV's build) on a 48 kHz tone, 1 s blocks (PyAV re-frames)."""
    ctx = av.CodecContext.create(codec, "w")
    assert isinstance(ctx, av.AudioCodecContext)
    layout = "stereo" if channels == 2 else "mono"
    ctx.sample_rate, ctx.layout, ctx.bit_rate = 48000, layout, 128_000
    ctx.format = "flt" if codec == "libopus" else "fltp"
    ctx.time_base = Fraction(1, 48000)
    ctx.options = options
    t = np.arange(48000) / 48000
    block = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 660 * t)]).astype(np.float32) * 0.3
    block = block[:channels]
    data = np.ascontiguousarray(block.T.reshape(1, -1)) if ctx.format.name == "flt" else block
    cpu = cpu_self()
    for k in range(round(seconds)):
        frame = av.AudioFrame.from_ndarray(data, format=ctx.format.name, layout=layout)
        frame.sample_rate, frame.pts = 48000, k * 48000
        ctx.encode(frame)
    ctx.encode(None)
    return round(seconds) / (cpu_self() - cpu)


def encode_alone_ffmpeg(ffmpeg: str, codec_args: list[str], channels: int, seconds: float) -> float:
    """The same encoder through the ``ffmpeg`` CLI (its own FFmpeg and codec builds), on a generated tone."""
    cmd = [ffmpeg, "-v", "error", "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds:g}"]
    cmd += ["-ac", str(channels), *codec_args, "-f", "null", "-"]
    cpu = cpu_children()
    subprocess.run(cmd, check=True)
    return seconds / (cpu_children() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", nargs="*", default=None, help="scenario names to run")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/roomtape-bench-audio"))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "audio_composite.json")
    args = parser.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        sys.exit("ffmpeg is not installed (Debian: apt-get install ffmpeg): no baseline to compare with")
    media = args.seconds
    base = cached_tracks(args.cache, media, args.participants)
    result: dict[str, object] = {
        "command": " ".join([".venv/bin/python", *sys.argv]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "pyav": av.__version__,
            "ffmpeg_cli": subprocess.run([ffmpeg, "-version"], capture_output=True, text=True).stdout.split("\n")[0],
        },
        "uptime_at_start": uptime(),
        "media_seconds": media,
        "inputs": "20 ms Opus packets, stereo-coded tones (every packet carries sound), recorded by TrackRecorder",
        "targets": {"2p_x_real_time_per_core": 200, "4p_x_real_time_per_core": 100, "cpu_vs_ffmpeg": 0.5},
    }
    runs: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="roomtape-bench-audio-") as tmp:
        root = Path(tmp)
        for scenario in scenarios():
            if (args.only and scenario.name not in args.only) or scenario.participants > args.participants:
                continue
            tracks = subset(base, scenario.participants, root)
            ours_out, theirs_out = root / f"roomtape.{scenario.suffix}", root / f"ffmpeg.{scenario.suffix}"
            cmd = ffmpeg_command(ffmpeg, tracks, scenario, media, theirs_out)
            ours, theirs = [], []
            durations = {}
            for _ in range(args.repeats):
                cpu, durations["roomtape"] = run_roomtape(tracks, media, scenario.options, ours_out)
                ours.append(cpu)
                cpu, durations["ffmpeg"] = run_ffmpeg(cmd, theirs_out)
                theirs.append(cpu)
            sizes = {"roomtape": ours_out.stat().st_size, "ffmpeg": theirs_out.stat().st_size}
            profile = profile_roomtape(tracks, media, scenario.options, ours_out)
            best, best_theirs = min(ours), min(theirs)
            runs[scenario.name] = {
                "participants": scenario.participants,
                "roomtape_cpu_seconds": ours,
                "ffmpeg_cpu_seconds": theirs,
                "roomtape_x_real_time_per_core": media / best,
                "ffmpeg_x_real_time_per_core": media / best_theirs,
                "roomtape_vs_ffmpeg_cpu": best / best_theirs,
                "output_duration_seconds": durations,
                "size_bytes": sizes,
                "ffmpeg_command": " ".join(cmd),
                "roomtape_options": repr(scenario.options),
                "roomtape_profile_top_tottime": profile,
                "uptime_after": uptime(),
            }
            print(
                f"{scenario.name:32s} roomtape {media / best:6.0f}x real time per core, "
                f"ffmpeg {media / best_theirs:5.0f}x -> {best / best_theirs:.2f}x ffmpeg's CPU",
                flush=True,
            )
        components = {
            "opus_decode_per_track_x_real_time": decode_alone(track_file(base, 0), media),
            "libopus_encode_stereo_128k_x_real_time": encode_alone(
                "libopus", media, {"application": "audio", "frame_duration": "20"}
            ),
            "aac_fast_encode_stereo_128k_x_real_time": encode_alone("aac", media, {"aac_coder": "fast"}),
            "libmp3lame_encode_stereo_128k_x_real_time": encode_alone("libmp3lame", media, {}),
        }
        # PyAV's wheels bundle their own FFmpeg and codec libraries: the same encoder can cost differently there
        components["ffmpeg_cli_libopus_encode_stereo_128k_x_real_time"] = encode_alone_ffmpeg(
            ffmpeg, OPUS_ARGS, 2, media
        )
        components["ffmpeg_cli_aac_fast_encode_stereo_128k_x_real_time"] = encode_alone_ffmpeg(
            ffmpeg, AAC_ARGS, 2, media
        )
        components["ffmpeg_cli_libmp3lame_encode_stereo_128k_x_real_time"] = encode_alone_ffmpeg(
            ffmpeg, MP3_ARGS, 2, media
        )
        components["ffmpeg_cli_libmp3lame_encode_mono_128k_x_real_time"] = encode_alone_ffmpeg(
            ffmpeg, MP3_ARGS, 1, media
        )
        components["libmp3lame_encode_mono_128k_x_real_time"] = encode_alone("libmp3lame", media, {}, channels=1)
        print("components:", {k: round(v) for k, v in components.items()}, flush=True)
    result["runs"] = runs
    result["components"] = components
    result["uptime_at_end"] = uptime()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
