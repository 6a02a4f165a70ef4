"""Scale-out on one host: recorded tracks with 1 vs 2 media processes, and placement latency.

Each configuration is a real deployment of separate processes on loopback
(``tests/integration/cluster/deployment.py``: PostgreSQL, Redis, an api node, media nodes):

- ``embedded``: one ``roomtape serve`` (role ``all``, no registry): the baseline of today;
- ``1 media``: api node + 1 media node;
- ``2 media``: api node + 2 media nodes.

Load: T publishers (``bench/bench_peers.py`` in its own process: pre-encoded 640x480 30 fps VP8 at about
1.5 Mbit/s, packed by aiortc without encoding), one per meeting, every video track recorded (RealtimeKit
track recording through the api node). Over a steady window each media process's CPU time
(``/proc/<pid>/stat``, all threads) is read; after the stop, the frames written to disk are counted against
30 fps x the recorded time. One event loop uses at most one core, so the host's capacity in recorded tracks
is estimated as ``sum over media processes of min(1, cores free) / CPU per track``: with the same CPU per
track, two processes carry twice the tracks of one on a 2-core host. A second estimate subtracts each
process's idle cost (measured for 10 s on the fresh deployment, before any room):
``(cores - idle) / CPU per track above idle``. The estimates are reported next to what was measured; the run
is not driven to saturation (the machine is shared: see the load averages).

Placement latency: a meeting with ``record_on_start``; from the moment a participant starts connecting
(``RoomClient(api URL).join()`` + ``publish()``) to the recording's ``started_time`` (the first frame written
to disk, stamped by the media node), R times per configuration after 2 uncounted warm-up joins, on an idle
deployment: each participant leaves once its frame is on disk and the next join waits until the stopped
recording's live composite render (a process per recording, ``roomtape.recording.live``) has finished (the
warm-up participants stay until the end of the warm-up, so each media node gets one of them). (Before 2026-12-04 the
latency publishers stayed and the renders ran on, so join i met the i-1 before it still streaming into the
nodes and out of the peer process, and render processes starting up (each imports PyAV and the compositor:
about a second of a core), and the figures rose with i: ``results/scaleout_quiet.json`` and earlier.)

Run: ``.venv/bin/python bench/scaleout.py [--tracks 6] [--seconds 15] [--latency-runs 10] [--warmup 2]``. Writes
``bench/results/scaleout.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))
import bench_peers  # noqa: E402 - the worker module sits next to this script
from forwarding import Worker, cpu_ticks, loadavg  # noqa: E402
from tests.integration.cluster.deployment import Deployment, deployment  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
FPS = bench_peers.FPS


async def _data(response: httpx.Response) -> Any:
    if response.status_code >= 300:
        raise RuntimeError(f"{response.request.method} {response.request.url}: {response.status_code} {response.text}")
    return response.json()["data"]


async def _participant(http: httpx.AsyncClient, dep: Deployment, meeting_id: str, name: str) -> str:
    body = {"name": name, "preset_name": "group_call_host", "custom_participant_id": f"{name}-{time.time_ns()}"}
    return str((await _data(await http.post(f"{dep.rtk}/meetings/{meeting_id}/participants", json=body)))["token"])


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def _latency(http: httpx.AsyncClient, dep: Deployment, worker: Worker, runs: int, warmup: int) -> list[float]:
    """Connect-start → first frame on disk (the recording's started_time), one meeting at a time.

    The first ``warmup`` joins are not counted: a process's first room pays one-time costs (imports, codec
    and DTLS set-up), and with two media nodes the first two rooms land on different nodes (their
    participants stay until the warm-up ends; every later one leaves once measured).
    """
    out: list[float] = []
    for i in range(warmup + runs):
        meeting = await _data(
            await http.post(f"{dep.rtk}/meetings", json={"title": f"lat{i}", "record_on_start": True})
        )
        token = await _participant(http, dep, meeting["id"], f"lat{i}")
        t0 = time.time()
        await asyncio.to_thread(worker.call, "rt_publish", dep.base, token)
        deadline = time.monotonic() + 30
        while True:
            got = await http.get(f"{dep.rtk}/recordings/active-recording/{meeting['id']}")
            rec = got.json().get("data") if got.status_code == 200 else None
            if rec and rec.get("started_time"):
                if i >= warmup:
                    out.append(round((_epoch(rec["started_time"]) - t0) * 1000, 1))
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"meeting {meeting['id']}: no frame recorded within 30 s\n{dep.logs()}")
            await asyncio.sleep(0.02)
        await http.put(f"{dep.rtk}/recordings/{rec['id']}", json={"action": "stop"})
        if i >= warmup - 1:  # the warm-up participants stay until the last, so their rooms go to different nodes
            await asyncio.to_thread(worker.call, "rt_leave_all")
            await _settle(dep)
    return out


def _renders(dep: Deployment) -> int:
    """Live composite renders (``python -m roomtape.recording.live``) the deployment's nodes are running."""
    parents = {str(n.process.pid) for n in (dep.api, *dep.media) if n is not None}
    count = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status, cmdline = (proc / "status").read_text(), (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next((line.split()[1] for line in status.splitlines() if line.startswith("PPid:")), "")
        if ppid in parents and b"roomtape.recording.live" in cmdline:
            count += 1
    return count


async def _settle(dep: Deployment, within: float = 60.0) -> None:
    """Wait until the stopped recordings' live renders have finished: the next join meets an idle deployment."""
    for _ in range(int(within * 10)):
        if not _renders(dep):
            return
        await asyncio.sleep(0.1)


async def _idle(dep: Deployment, seconds: float) -> dict[str, float]:
    """What each room-holding process costs with no room (heartbeats, the recorder's collector, the loop)."""
    pids = {node.name: node.process.pid for node in (dep.media or [dep.api]) if node is not None}
    await asyncio.sleep(3)  # start-up settles
    before = {name: cpu_ticks(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    return {name: round((cpu_ticks(pid) - before[name]) / CLK_TCK / wall, 4) for name, pid in pids.items()}


async def _tracks(
    http: httpx.AsyncClient, dep: Deployment, worker: Worker, count: int, seconds: float, idle: dict[str, float]
) -> dict[str, Any]:
    media = dep.media or [dep.api]  # embedded: the one process holds the rooms
    pids = {node.name: node.process.pid for node in media if node is not None}
    meetings = [
        (await _data(await http.post(f"{dep.rtk}/meetings", json={"title": f"t{i}"})))["id"] for i in range(count)
    ]
    for i, meeting_id in enumerate(meetings):
        await asyncio.to_thread(worker.call, "rt_publish", dep.base, await _participant(http, dep, meeting_id, f"t{i}"))
    recordings = []
    for meeting_id in meetings:
        body = {"meeting_id": meeting_id, "layers": {"v": {"media_kind": "video"}}}
        recordings.append((await _data(await http.post(f"{dep.rtk}/recordings/track", json=body)))["recording"]["id"])
    for rid in recordings:
        for _ in range(300):
            if (await _data(await http.get(f"{dep.rtk}/recordings/{rid}")))["status"] == "RECORDING":
                break
            await asyncio.sleep(0.1)
    await asyncio.sleep(2)  # settle
    before = {name: cpu_ticks(pid) for name, pid in pids.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    cpu = {name: round((cpu_ticks(pid) - before[name]) / CLK_TCK / wall, 3) for name, pid in pids.items()}
    placed: dict[str, int] = {}
    names = dep.node_ids()
    for meeting_id in meetings:
        node = names.get(dep.node_of_room(meeting_id) or "", media[0].name if media[0] else "?")
        placed[node] = placed.get(node, 0) + 1
    written = expected = 0.0
    for rid in recordings:
        await _data(await http.put(f"{dep.rtk}/recordings/{rid}", json={"action": "stop"}))
    for rid in recordings:
        rec = await _data(await http.get(f"{dep.rtk}/recordings/{rid}"))
        written += sum(f["frames"] or 0 for f in rec["files"] or [])
        if rec.get("started_time") and rec.get("stopped_time"):
            expected += (_epoch(rec["stopped_time"]) - _epoch(rec["started_time"])) * FPS
    total = sum(cpu.values())
    per_track = total / count
    # Per track above the processes' idle cost: what one more track costs.
    marginal = (total - sum(idle.values())) / count
    # One event loop per process: a process cannot use more than one core, nor more than the host has.
    cores = os.cpu_count() or 1
    usable = min(len(pids), cores) - sum(idle.values())
    capacity = min(len(pids), cores) / per_track if per_track > 0 else None
    capacity_marginal = usable / marginal if marginal > 0 else None
    return {
        "tracks": count,
        "tracks_per_process": placed,
        "cpu_cores_per_process": cpu,
        "cpu_cores_total": round(total, 3),
        "cpu_cores_per_track": round(per_track, 4),
        "cpu_cores_idle_per_process": idle,
        "cpu_cores_per_track_above_idle": round(marginal, 4),
        "estimated_capacity_tracks_above_idle": round(capacity_marginal, 1) if capacity_marginal else None,
        "frames_written": int(written),
        "frames_expected": int(expected),
        "frames_written_ratio": round(written / expected, 4) if expected else None,
        "estimated_capacity_tracks": round(capacity, 1) if capacity else None,
        "window_seconds": round(wall, 2),
    }


async def run_config(label: str, media_nodes: int, args: argparse.Namespace, video: Path) -> dict[str, Any]:
    env = {"ROOMTAPE_CLUSTER_URL": ""} if media_nodes == 0 else {}
    with tempfile.TemporaryDirectory(prefix="roomtape-scaleout-") as tmp:
        role = "all" if media_nodes == 0 else "api"
        async with (
            deployment(Path(tmp), media_nodes=media_nodes, workers=0, api_role=role, **env) as dep,
            httpx.AsyncClient(headers=dep.headers, timeout=60) as http,
        ):
            idle = await _idle(dep, 10.0)
            ctx = mp.get_context("spawn")
            worker = await asyncio.to_thread(Worker, ctx, "latency", video=video, counting=True)
            try:
                latency = await _latency(http, dep, worker, args.latency_runs, args.warmup)
            finally:
                await asyncio.to_thread(worker.stop)
            worker = await asyncio.to_thread(Worker, ctx, "load", video=video, counting=True)
            try:
                load = await _tracks(http, dep, worker, args.tracks, args.seconds, idle)
            finally:
                await asyncio.to_thread(worker.stop)
    return {
        "config": label,
        "media_processes": max(media_nodes, 1),
        "placement_latency_ms": {
            "runs": latency,
            "median": round(statistics.median(latency), 1),
            "p90": round(sorted(latency)[max(0, int(len(latency) * 0.9) - 1)], 1),
            "min": min(latency),
        },
        "recorded_tracks": load,
        "load_average_after": loadavg(),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tracks", type=int, default=6, help="recorded video tracks (one publisher each)")
    parser.add_argument("--seconds", type=float, default=15.0, help="CPU window")
    parser.add_argument("--latency-runs", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2, help="joins per configuration not counted")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "scaleout.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "loop.webm"
        bench_peers.make_video_file(video)
        started = loadavg()
        started_at = datetime.now(UTC).isoformat(timespec="seconds")
        configs = []
        for label, nodes in (("embedded", 0), ("1 media", 1), ("2 media", 2)):
            print(f"scaleout: {label} ...", flush=True)
            configs.append(await run_config(label, nodes, args, video))
            print(json.dumps(configs[-1]), flush=True)
    one, two = configs[1], configs[2]
    result = {
        "command": "python bench/scaleout.py " + " ".join(sys.argv[1:]),
        "time": started_at,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "load_average_at_start": started,
        "note": (
            "The machine is shared with other engineers' test runs while this ran (see the load averages, "
            "1/5/15 min, on 2 cores): absolute CPU and latency figures are noisy; the capacity is an estimate "
            "from the CPU per track measured at a load below saturation, not a saturation run."
        ),
        "configs": configs,
        "comparison": {
            "cpu_per_track_2_vs_1": _ratio(
                two["recorded_tracks"]["cpu_cores_per_track"], one["recorded_tracks"]["cpu_cores_per_track"]
            ),
            "cpu_per_track_above_idle_2_vs_1": _ratio(
                two["recorded_tracks"]["cpu_cores_per_track_above_idle"],
                one["recorded_tracks"]["cpu_cores_per_track_above_idle"],
            ),
            "estimated_capacity_above_idle_2_vs_1": _ratio(
                two["recorded_tracks"]["estimated_capacity_tracks_above_idle"],
                one["recorded_tracks"]["estimated_capacity_tracks_above_idle"],
            ),
            "estimated_capacity_2_vs_1": _ratio(
                two["recorded_tracks"]["estimated_capacity_tracks"], one["recorded_tracks"]["estimated_capacity_tracks"]
            ),
            "placement_latency_median_2_minus_1_ms": round(
                two["placement_latency_ms"]["median"] - one["placement_latency_ms"]["median"], 1
            ),
            "placement_latency_median_1_minus_embedded_ms": round(
                one["placement_latency_ms"]["median"] - configs[0]["placement_latency_ms"]["median"], 1
            ),
        },
    }
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["comparison"], indent=2))


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


if __name__ == "__main__":
    asyncio.run(main())
