"""Forwarding CPU per subscribed video and audio track and join latency: roomtape's SFU vs a naive aiortc SFU.

Everything runs on loopback, each party in its own process (see ``bench/bench_peers.py``):

- a real ``roomtape serve`` (SQLite in a temp dir) — the process that is measured;
- one publisher (a ``RoomClient``) sending a pre-encoded 640x480 30 fps VP8 file (made once with PyAV),
  packed by aiortc without encoding; then, in a second phase on a fresh server, one publisher sending
  pre-encoded 20 ms Opus packets (``--kinds``);
- N subscribers (``RoomClient``s in one process; N = 0, 1, 2, 4, 8, 16) that receive and count every frame
  of that kind (aiortc's decoder replaced by a counter, so the subscribers stay cheap).

The server's CPU time (``/proc/<pid>/stat`` utime + stime, all threads) is read over a steady window at each
N; the cost per subscribed track is the least-squares slope of CPU vs N. The baseline is the same load on a
naive SFU written here: an aiortc peer connection decodes the publisher and each subscriber gets
``MediaRelay().subscribe(track)``, which aiortc re-encodes per subscriber (the aiortc ``server`` example's
shape), measured the same way on its own process, per kind.

Join latency: from ``RoomClient(base_url, token)`` + ``join()`` to the first *decoded* picture of a participant
that is already publishing (10 times), and from a publisher's ``RoomClient`` + ``join()`` + ``publish()`` to
the first decoded picture at a subscriber that already waits in the meeting.

Run: ``.venv/bin/python bench/forwarding.py`` (about 7 minutes; ``--help`` for options). Writes
``bench/results/forwarding.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiortc
import av
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_peers  # the worker module sits next to this script

BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------ processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_ticks(pid: int) -> int:
    """utime + stime of every thread of ``pid``, in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class Worker:
    """A peer process (``bench_peers.worker_main``) driven by blocking calls."""

    def __init__(
        self,
        ctx: Any,
        name: str,
        *,
        video: Path | None,
        counting: bool,
        use_uvloop: bool = False,
        kind: str = "video",
    ) -> None:
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=bench_peers.worker_main, args=(child, use_uvloop), name=name, daemon=True)
        self.proc.start()
        self.pid: int = self.call("setup", str(video) if video else None, counting, kind)

    def call(self, method: str, *args: Any, timeout: float = 60.0) -> Any:
        self.conn.send((method, args))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{self.name}.{method} took more than {timeout} s")
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"{self.name}.{method} failed:\n{result}")
        return result

    def stop(self) -> None:
        if self.proc.is_alive():
            try:
                self.call("exit", timeout=10)
            except (TimeoutError, RuntimeError, OSError, EOFError):
                pass
            self.proc.join(5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)


class Server:
    """``roomtape serve`` in a subprocess, with one app and its API token."""

    def __init__(self, data_dir: Path) -> None:
        port = free_port()
        self.env = {
            **os.environ,
            "ROOMTAPE_DATA_DIR": str(data_dir),
            "ROOMTAPE_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'roomtape.db'}",
            "ROOMTAPE_PORT": str(port),
            "ROOMTAPE_ICE_HOST_ADDRESSES": "127.0.0.1",
        }
        created = subprocess.run(
            [str(BIN / "roomtape"), "apps", "create", "--name", "bench"],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        app = json.loads(created.stdout)
        self.log = data_dir / "server.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "roomtape"), "serve", "--no-demo"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self.base_url = f"http://127.0.0.1:{port}"
        self.api = f"{self.base_url}/accounts/{app['account_id']}/realtime/kit/{app['app_id']}"
        self.headers = {"Authorization": f"Bearer {app['api_token']}"}
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + self.log.read_text())
            time.sleep(0.1)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = httpx.post(self.api + path, json=body, headers=self.headers, timeout=10)
        response.raise_for_status()
        return dict(response.json()["data"])

    def meeting(self) -> str:
        return str(self._post("/meetings", {"title": "bench"})["id"])

    def tokens(self, meeting_id: str, count: int, prefix: str) -> list[str]:
        return [
            str(
                self._post(
                    f"/meetings/{meeting_id}/participants",
                    {"name": f"{prefix}{i}", "preset_name": "group_call_host", "custom_participant_id": f"{prefix}{i}"},
                )["token"]
            )
            for i in range(count)
        ]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


NOTES = [
    "CPU is the SFU process's utime+stime (all threads) over the window; per-track cost is the least-squares "
    "slope over N. Baseline levels where a subscriber got < 90 % of 30 fps are left out of its slope (the "
    "naive SFU saturating a shared 2-core machine).",
    "The naive SFU's aiortc VP8 encoders start at 500 kbit/s and follow REMB, so they send fewer bytes per "
    "track than roomtape forwards (the publisher's ~1.5 Mbit/s): the ratio is, if anything, kind to the baseline.",
    "The publisher loops the pre-encoded file itself (LoopTrack) instead of MediaPlayer(decode=False): that "
    "player's loop restarts pts at 0 (a burst and backwards RTP timestamps) and a passthrough sender cannot "
    "answer a PLI; LoopTrack jumps to the file's next keyframe on a PLI, as an encoder would send one.",
    "CPU-phase subscribers count encoded frames (aiortc's decoder replaced); join latency is to the first "
    "decoded picture (aiortc's VP8 decoder).",
    "Both SFUs run on uvloop: roomtape serve through uvicorn's loop='auto', the naive SFU's worker explicitly.",
    "Video and audio are separate phases, each with one publisher of that kind on a fresh server followed by the "
    "naive SFU with the same load; an audio subscriber's full rate is 50 Opus packets/s (the 90 % rule applies "
    "to that).",
]


# ---------------------------------------------------------------------------------------- measurement
def measure(
    sfu_pid: int, subscribers: Worker | None, publisher: Worker, settle: float, window: float
) -> dict[str, Any]:
    """The SFU process's CPU over ``window`` seconds, and what the subscribers received meanwhile."""
    time.sleep(settle)
    sub0 = subscribers.call("stats") if subscribers else None
    pub0 = publisher.call("stats")
    t0, cpu0 = time.monotonic(), cpu_ticks(sfu_pid)
    time.sleep(window)
    t1, cpu1 = time.monotonic(), cpu_ticks(sfu_pid)
    sub1 = subscribers.call("stats") if subscribers else None
    pub1 = publisher.call("stats")
    wall = t1 - t0
    out: dict[str, Any] = {
        "sfu_cores": round((cpu1 - cpu0) / CLK_TCK / wall, 4),
        "window_s": round(wall, 2),
        "sfu_rss_mb": rss_mb(sfu_pid),
        "publisher_cores": round((pub1["cpu_s"] - pub0["cpu_s"]) / (pub1["t"] - pub0["t"]), 4),
        "load_average": loadavg(),
    }
    if sub0 is not None and sub1 is not None:
        dt = sub1["t"] - sub0["t"]
        fps = [(b - a) / dt for a, b in zip(sub0["frames"], sub1["frames"], strict=True)]
        rates = [(b - a) / dt for a, b in zip(sub0["bytes"], sub1["bytes"], strict=True)]
        out.update(
            subscriber_fps_min=round(min(fps), 1) if fps else None,
            subscriber_fps_mean=round(sum(fps) / len(fps), 1) if fps else None,
            forwarded_bytes_per_s=round(sum(rates)),
            subscriber_process_cores=round((sub1["cpu_s"] - sub0["cpu_s"]) / dt, 4),
        )
    else:
        out.update(subscriber_fps_min=None, subscriber_fps_mean=None, forwarded_bytes_per_s=0)
    return out


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of y over x."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def run_roomtape(
    ctx: Any, video: Path, workdir: Path, levels: list[int], args: argparse.Namespace, kind: str = "video"
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One publisher of ``kind`` on a fresh server, N subscribers; join latency measured in the video phase."""
    workdir.mkdir()
    server = Server(workdir)
    workers: list[Worker] = []
    try:
        meeting = server.meeting()
        pub_token, *sub_tokens = server.tokens(meeting, 1 + max(levels), "sub")
        join_tokens = server.tokens(meeting, args.latency_runs, "joiner")
        publisher = Worker(ctx, "rt-publisher", video=video, counting=True, kind=kind)
        workers.append(publisher)
        publisher.call("rt_publish", server.base_url, pub_token)
        subscribers = Worker(ctx, "rt-subscribers", video=None, counting=True, kind=kind)
        workers.append(subscribers)
        runs: dict[int, dict[str, Any]] = {}
        joined = 0
        for n in levels:
            if n > joined:
                subscribers.call("rt_subscribe", server.base_url, sub_tokens[joined:n])
                joined = n
            runs[n] = measure(server.proc.pid, subscribers if n else None, publisher, args.settle, args.window)
            print(f"roomtape {kind} N={n}: {runs[n]}", flush=True)
        subscribers.stop()
        workers.remove(subscribers)
        if kind != "video":
            return {"runs": runs}, None

        # Join latency: a decoding client joins the meeting where the publisher already publishes.
        latency = Worker(ctx, "latency", video=video, counting=False)
        workers.append(latency)
        join = latency.call("latency_join", server.base_url, join_tokens, 0.3, timeout=120)
        pairs = []
        for _ in range(args.latency_runs):
            m = server.meeting()
            waiting, publishing = server.tokens(m, 2, "pair")
            pairs.append((waiting, publishing))
        publish = latency.call("latency_publish", server.base_url, pairs, 0.3, timeout=120)
        keyframe_requests = publisher.call("stats")["keyframe_requests"]
        latency_result = {
            "join_to_first_decoded_frame_of_publishing_participant": {
                **bench_peers.summary(join),
                "runs_s": [round(x, 3) for x in join],
            },
            "publish_to_first_decoded_frame_at_waiting_subscriber": {
                **bench_peers.summary(publish),
                "runs_s": [round(x, 3) for x in publish],
            },
            "publisher_keyframe_requests_received": keyframe_requests,
        }
        print(f"latency: {json.dumps(latency_result)}", flush=True)
        return {"runs": runs}, latency_result
    finally:
        for worker in reversed(workers):
            worker.stop()
        server.stop()


def run_baseline(
    ctx: Any, video: Path, levels: list[int], args: argparse.Namespace, kind: str = "video"
) -> dict[str, Any]:
    workers: list[Worker] = []
    try:
        sfu = Worker(ctx, "naive-sfu", video=None, counting=False, use_uvloop=True)
        workers.append(sfu)
        publisher = Worker(ctx, "bl-publisher", video=video, counting=True, kind=kind)
        workers.append(publisher)
        publisher.call("bl_answer", [sfu.call("sfu_publisher", publisher.call("bl_publish_offer"))])
        subscribers = Worker(ctx, "bl-subscribers", video=None, counting=True, kind=kind)
        workers.append(subscribers)
        runs: dict[int, dict[str, Any]] = {}
        joined = 0
        for n in levels:
            if n > joined:
                offers = subscribers.call("bl_subscribe_offers", n - joined)
                subscribers.call("bl_answer", sfu.call("sfu_subscribers", offers))
                subscribers.call("wait_first_frames")
                joined = n
            runs[n] = measure(sfu.pid, subscribers if n else None, publisher, args.settle, args.window)
            print(f"baseline {kind} N={n}: {runs[n]}", flush=True)
        return {"runs": runs}
    finally:
        for worker in reversed(workers):
            worker.stop()


def frame_rate(kind: str) -> float:
    """Frames (video) or packets (Opus) per second a subscriber of ``kind`` gets at full rate."""
    return 1 / bench_peers.PTIME if kind == "audio" else bench_peers.FPS


def per_track(result: dict[str, Any], full_rate_only: bool, kind: str = "video") -> dict[str, Any]:
    """CPU per subscribed track (slope over N), using levels where subscribers got at least 90 % of the rate."""
    runs = result["runs"]
    rate = frame_rate(kind)
    ok = [n for n, r in runs.items() if n == 0 or not full_rate_only or (r["subscriber_fps_min"] or 0) >= 0.9 * rate]
    points = [(n, runs[n]["sfu_cores"]) for n in ok]
    cores = slope(points) if len(points) >= 2 else float("nan")
    top = max(ok)
    return {
        "levels_used": ok,
        "cores_per_subscribed_track": round(cores, 4),
        "percent_of_a_core_per_subscribed_track": round(cores * 100, 2),
        "cores_at_n0": runs[0]["sfu_cores"] if 0 in runs else None,
        "forwarded_bytes_per_s_per_track": round(runs[top]["forwarded_bytes_per_s"] / top) if top else None,
        "us_cpu_per_forwarded_frame": round(cores / rate * 1e6, 1),
    }


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="0,1,2,4,8,16", help="subscriber counts for roomtape")
    parser.add_argument(
        "--baseline-levels",
        default="0,1,2,4,8",
        help="subscriber counts for the naive SFU's video (re-encoding 16 VP8 streams saturates 2 cores)",
    )
    parser.add_argument("--baseline-audio-levels", default="0,1,2,4,8,16", help="the naive SFU's audio levels")
    parser.add_argument("--kinds", default="video,audio", help="phases to run, each on a fresh server")
    parser.add_argument("--window", type=float, default=10.0, help="seconds of CPU measured per level")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds waited after subscribers join")
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument("--time-limit", type=int, default=900, help="abort after this many seconds")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "forwarding.json")
    args = parser.parse_args()
    levels = sorted({int(x) for x in args.levels.split(",")})
    baseline_levels = {
        "video": sorted({int(x) for x in args.baseline_levels.split(",")}),
        "audio": sorted({int(x) for x in args.baseline_audio_levels.split(",")}),
    }
    kinds = [k for k in ("video", "audio") if k in args.kinds.split(",")]

    def too_long(signum: int, frame: Any) -> None:
        raise TimeoutError(f"benchmark exceeded --time-limit {args.time_limit} s")

    signal.signal(signal.SIGALRM, too_long)
    signal.alarm(args.time_limit)
    started = time.monotonic()
    load_at_start = loadavg()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-forwarding-") as tmp:
        workdir = Path(tmp)
        video = workdir / "load.webm"
        video_facts = bench_peers.make_video_file(video)
        roomtape: dict[str, dict[str, Any]] = {}
        baseline: dict[str, dict[str, Any]] = {}
        latency: dict[str, Any] | None = None
        for kind in kinds:  # the roomtape phase and the naive SFU's of one kind back to back, in this run
            roomtape[kind], kind_latency = run_roomtape(ctx, video, workdir / f"server-{kind}", levels, args, kind)
            latency = latency or kind_latency
            baseline[kind] = run_baseline(ctx, video, baseline_levels[kind], args, kind)
    signal.alarm(0)

    rt = {k: per_track(roomtape[k], full_rate_only=False, kind=k) for k in kinds}
    bl = {k: per_track(baseline[k], full_rate_only=True, kind=k) for k in kinds}
    ratio = {k: rt[k]["cores_per_subscribed_track"] / bl[k]["cores_per_subscribed_track"] for k in kinds}
    out = {
        "command": " ".join([os.path.relpath(sys.executable, ROOT), *sys.argv]),
        "machine": {
            "nproc": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": loadavg(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "aiortc": aiortc.__version__,
            "av": av.__version__,
        },
        "load": {
            "video": f"{bench_peers.WIDTH}x{bench_peers.HEIGHT} VP8 {bench_peers.FPS} fps, pre-encoded "
            f"({video_facts['frames']} frames looped, keyframe every {bench_peers.GOP}, "
            f"{video_facts['bitrate_bps']} bit/s)",
            "audio": "20 ms Opus packets (48 kHz stereo 440 Hz tone, libopus defaults), pre-encoded, looped",
            "phases": "one publisher of one kind per phase (its own server), video then audio",
            "window_s": args.window,
            "transport": "loopback UDP, DTLS-SRTP, one process per party",
        },
        "notes": NOTES,
        "summary": {},
        "roomtape": {k: {**rt[k], "runs": roomtape[k]["runs"]} for k in kinds},
        "baseline_naive_aiortc_sfu": {k: {**bl[k], "runs": baseline[k]["runs"]} for k in kinds},
        "join_latency": latency,
        "duration_s": round(time.monotonic() - started, 1),
    }
    summary: dict[str, Any] = out["summary"]
    for k in kinds:
        summary |= {
            f"roomtape_percent_core_per_subscribed_{k}_track": rt[k]["percent_of_a_core_per_subscribed_track"],
            f"baseline_percent_core_per_subscribed_{k}_track": bl[k]["percent_of_a_core_per_subscribed_track"],
            f"roomtape_{k}_forwarded_bytes_per_s_per_track": rt[k]["forwarded_bytes_per_s_per_track"],
            f"baseline_{k}_sent_bytes_per_s_per_track": bl[k]["forwarded_bytes_per_s_per_track"],
            f"{k}_ratio_roomtape_over_baseline": round(ratio[k], 3),
        }
    if latency is not None:
        join = latency["join_to_first_decoded_frame_of_publishing_participant"]
        publish = latency["publish_to_first_decoded_frame_at_waiting_subscriber"]
        summary |= {
            "join_latency_median_s": join["median_s"],
            "join_latency_p90_s": join["p90_s"],
            "publish_to_waiting_subscriber_median_s": publish["median_s"],
            "publish_to_waiting_subscriber_p90_s": publish["p90_s"],
        }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")

    print()
    print(f"{'':30}{'N':>4}{'SFU cores':>11}{'sub fps min':>13}{'forwarded B/s':>15}")
    for k in kinds:
        for name, result in ((f"roomtape {k}", roomtape[k]), (f"naive aiortc SFU {k}", baseline[k])):
            for n, r in result["runs"].items():
                fps = "-" if r["subscriber_fps_min"] is None else f"{r['subscriber_fps_min']:.1f}"
                print(f"{name:30}{n:>4}{r['sfu_cores']:>11.3f}{fps:>13}{r['forwarded_bytes_per_s']:>15,}")
    print()
    for k in kinds:
        percent = rt[k]["percent_of_a_core_per_subscribed_track"]
        print(f"CPU per subscribed {k} track: roomtape {percent:.2f} % of a core,")
        print(f"  naive SFU {bl[k]['percent_of_a_core_per_subscribed_track']:.2f} % (levels {bl[k]['levels_used']})")
        print(f"  ratio roomtape / baseline = {ratio[k]:.3f}")
    if latency is not None:
        print(f"join -> first decoded frame: median {summary['join_latency_median_s']:.3f} s")
        waiting = summary["publish_to_waiting_subscriber_median_s"]
        print(f"publish -> first decoded frame at a waiting subscriber: median {waiting:.3f} s")
    print(f"load average at start {load_at_start}, at end {loadavg()}; wrote {args.out}")


if __name__ == "__main__":
    main()
