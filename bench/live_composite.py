"""Stop → UPLOADED of a meeting recording with the live compositor, through the real server.

A ``roomtape serve`` subprocess (SQLite, local storage, ``ROOMTAPE_LIVE_COMPOSITE`` on unless ``--after``) and
``--participants`` (default 4) aiortc publishers in this process (``roomtape.agents.RoomClient``). Each publisher
sends pre-encoded VP8 at ``--input-size`` (default 1280x720, 30 fps, textured and moving, a different texture
per publisher, ~1.5 Mbit/s) looped in real time and packed by aiortc without encoding (``bench_peers.LoopTrack``,
so the publishers' own encoders do not take the CPU the server needs), plus a tone per publisher (aiortc's Opus
encoder). For each of ``--repeats`` runs a meeting recording (grid, ``--size`` 1280x720, ``--fps``, ``--preset``
through ``video_config``) is started with the Cloudflare SDK, recorded for ``--seconds``, stopped, and the time
from the stop call's return to ``UPLOADED`` is measured (polling the recording every 50 ms). The composite is
downloaded and decoded with PyAV (duration, frame count, size), and the live render's own figures
(``config["composite"]["live"]``: media left at the stop, how far it fell behind, its tail time) are read from
the database. The CPU time of the server process tree and the load average before and after every run go into
the JSON: the machine is shared, so read figures against the load.

Run: ``.venv/bin/python bench/live_composite.py [--participants 4] [--seconds 60] [--repeats 3]``; writes
``bench/results/live_composite.json`` (``--out``). ``--after`` measures the render from files after the stop
(the old path) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioice.ice
import av
import httpx
import numpy as np
import psutil
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from bench_peers import LoopTrack, _route_plis_to_loop_tracks, read_packets
from cloudflare import AsyncCloudflare
from sqlalchemy import select

from roomtape.agents import RoomClient
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.models import Recording

BIN = Path(sys.executable).parent
FPS = 30
LOOP_FRAMES = 150
RATE = 48000


def make_video(path: Path, width: int, height: int, seed: int) -> list[tuple[bytes, bool]]:
    """5 s of moving, textured VP8 at about 1.5 Mbit/s (libvpx realtime, keyframe every 2 s)."""
    if not path.exists():
        rng = np.random.default_rng(seed)
        small = rng.integers(0, 255, (height * 2 // 16, width * 2 // 16, 3), dtype=np.uint8)
        texture = np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))
        tmp = path.with_suffix(".part.webm")
        with av.open(str(tmp), "w", format="webm") as out:
            stream = out.add_stream("libvpx", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.bit_rate = 1_500_000
            stream.codec_context.gop_size = 2 * FPS
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
            for i in range(LOOP_FRAMES):
                y, x = (i * 3) % height, (i * 5) % width
                img = np.ascontiguousarray(texture[y : y + height, x : x + width])
                frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
                frame.pts = i
                out.mux(stream.encode(frame))
            out.mux(stream.encode(None))
        tmp.rename(path)
    return read_packets(path)


class ToneTrack(MediaStreamTrack):
    """A continuous tone, 20 ms frames in real time."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__()
        self.freq = freq
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - now))
        t = (self._n * 960 + np.arange(960)) / RATE
        pcm = (0.2 * np.sin(2 * np.pi * self.freq * t) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = RATE, self._n * 960, fractions.Fraction(1, RATE)
        self._n += 1
        return frame


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(data_dir: Path, live: bool) -> tuple[subprocess.Popen[bytes], dict[str, Any], str, str]:
    port = free_port()
    database = f"sqlite+aiosqlite:///{data_dir / 'roomtape.db'}"
    env = {
        **os.environ,
        "ROOMTAPE_DATA_DIR": str(data_dir),
        "ROOMTAPE_DATABASE_URL": database,
        "ROOMTAPE_PORT": str(port),
        "ROOMTAPE_ICE_HOST_ADDRESSES": "127.0.0.1",
        "ROOMTAPE_LIVE_COMPOSITE": "true" if live else "false",
    }
    creds = subprocess.run(
        [str(BIN / "roomtape"), "apps", "create", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    app = json.loads(creds.stdout)
    log = open(data_dir / "server.log", "wb")  # kept open for the server's lifetime
    proc = subprocess.Popen(
        [str(BIN / "roomtape"), "serve", "--no-demo"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start")
        time.sleep(0.2)
    return proc, app, base, database


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children, live and reaped."""
    proc = psutil.Process(pid)
    t = proc.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in proc.children(recursive=True):
        with_child = child.cpu_times()
        total += with_child.user + with_child.system
    return total


async def recording_row(database: str, rid: str) -> Recording:
    engine = create_engine(database)
    try:
        async with session_factory(engine)() as db:
            row = await db.scalar(select(Recording).where(Recording.id == rid))
            assert row is not None
            return row
    finally:
        await engine.dispose()


def probe(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        frames = sum(1 for _ in container.decode(video=0))
        return {
            "duration_seconds": round(float(container.duration or 0) / av.time_base, 3),
            "video_frames": frames,
            "size": [video.codec_context.width, video.codec_context.height],
            "codecs": [video.codec_context.name, container.streams.audio[0].codec_context.name],
        }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    _route_plis_to_loop_tracks()
    width, height = (int(v) for v in args.input_size.lower().split("x"))
    cache = Path(tempfile.gettempdir()) / "roomtape-bench-live"
    cache.mkdir(exist_ok=True)
    videos = [make_video(cache / f"p{i}-{width}x{height}.webm", width, height, i) for i in range(args.participants)]
    out_w, out_h = (int(v) for v in args.size.lower().split("x"))
    workdir = Path(tempfile.mkdtemp(prefix="roomtape-bench-live-"))
    proc, app, base, database = start_server(workdir, live=not args.after)
    runs: list[dict[str, Any]] = []
    try:
        cf = AsyncCloudflare(api_token=app["api_token"], base_url=base, max_retries=0)
        acc, app_id = app["account_id"], app["app_id"]
        meeting = (await cf.realtime_kit.meetings.create(app_id, account_id=acc, title="bench")).data
        assert meeting is not None and meeting.id
        # Publishers that receive nothing: in a real meeting each participant's own machine decodes the others'
        # video; here every participant is in this process, and 12 unconsumed 720p downlinks would decode and
        # queue frames in it (GBs within minutes, and CPU the server needs).
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(
                f"{base}/accounts/{acc}/realtime/kit/{app_id}/presets",
                headers={"Authorization": f"Bearer {app['api_token']}"},
                json={"name": "bench_publisher", "permissions": {"can_subscribe": False}, "config": {}},
            )
        assert r.status_code == 201, r.text
        clients = []
        for i in range(args.participants):
            p = (
                await cf.realtime_kit.meetings.add_participant(
                    meeting.id,
                    account_id=acc,
                    app_id=app_id,
                    custom_participant_id=f"p{i}",
                    preset_name="bench_publisher",
                )
            ).data
            assert p is not None and p.token
            client = RoomClient(base, p.token)
            await client.join()
            await client.publish(audio=ToneTrack(300 + 200 * i), video=LoopTrack(videos[i]))
            clients.append(client)
        await asyncio.sleep(3.0)
        video_config: dict[str, Any] = {"codec": "H264", "width": out_w, "height": out_h}
        if args.fps:
            video_config["fps"] = args.fps
        if args.preset:
            video_config["preset"] = args.preset
        for _ in range(args.repeats):
            load_before = os.getloadavg()
            cpu_before = tree_cpu(proc.pid)
            started = await cf.realtime_kit.recordings.start_recordings(
                app_id,
                account_id=acc,
                meeting_id=meeting.id,
                video_config=video_config,  # type: ignore[arg-type]
            )
            assert started.data is not None
            rid = started.data.id
            await asyncio.sleep(args.seconds)
            await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=acc, app_id=app_id, action="stop"
            )
            stopped = time.monotonic()
            while True:
                one = await cf.realtime_kit.recordings.get_one_recording(rid, account_id=acc, app_id=app_id)
                if one.data.status in ("UPLOADED", "ERRORED"):
                    break
                await asyncio.sleep(0.05)
            stop_to_uploaded = time.monotonic() - stopped
            cpu = tree_cpu(proc.pid) - cpu_before
            load_after = os.getloadavg()
            assert one.data.status == "UPLOADED", one.data
            row = await recording_row(database, rid)
            async with httpx.AsyncClient(timeout=120) as http:
                got = await http.get(str(one.data.download_url))
            file = workdir / f"{rid}.mp4"
            file.write_bytes(got.content)
            composite = await asyncio.to_thread(probe, file)
            file.unlink()
            entry = {
                "recording_id": rid,
                "stop_to_uploaded_seconds": round(stop_to_uploaded, 3),
                "recorded_seconds": row.recording_duration,
                "composite": composite,
                "file_size_bytes": row.file_size,
                "live": (row.config.get("composite") or {}).get("live"),
                "render_seconds": (row.config.get("composite") or {}).get("render_seconds"),
                "server_cpu_seconds": round(cpu, 1),
                "server_cpu_per_media_second": round(cpu / args.seconds, 3),
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in load_after],
            }
            print(json.dumps(entry), flush=True)
            runs.append(entry)
        for client in clients:
            await client.leave()
        await cf.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    times = [r["stop_to_uploaded_seconds"] for r in runs]
    return {
        "stop_to_uploaded_seconds": {
            "p50": round(statistics.median(times), 3),
            "min": min(times),
            "max": max(times),
        },
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participants", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--input-size", default="1280x720")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--fps", type=int, default=0, help="video_config.fps (0: the server's default)")
    parser.add_argument("--preset", default="", help="video_config.preset (empty: the server's default)")
    parser.add_argument("--after", action="store_true", help="render from the files after the stop (no live)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "live_composite.json")
    args = parser.parse_args()
    load = os.getloadavg()
    started = time.time()
    result = asyncio.run(run(args))
    report = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_at_start": [round(x, 2) for x in load],
        },
        "scenario": (
            f"{args.participants} aiortc publishers, pre-encoded VP8 {args.input_size} 30 fps + Opus tone, "
            f"{args.seconds:g} s recordings x {args.repeats}, grid {args.size} MP4 "
            f"(video_config fps={args.fps or 'default'}, preset={args.preset or 'default'}), "
            + ("rendered after the stop" if args.after else "live composite")
        ),
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing: dict[str, Any] = {}
    if args.out.exists():
        existing = json.loads(args.out.read_text())
    key = f"{args.participants}p-{args.input_size}-{args.seconds:g}s"
    key += f"-fps{args.fps or 'default'}-{args.preset or 'default'}"
    key += "-after" if args.after else ""
    existing[key] = report
    args.out.write_text(json.dumps(existing, indent=2) + "\n")
    print(json.dumps(report["stop_to_uploaded_seconds"]))


if __name__ == "__main__":
    main()
