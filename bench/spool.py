"""The spool (``roomtape.recording.spool``): how soon a closed segment is in the spool, and what it costs.

A media node records N tracks that close a segment every ``--segment-seconds`` (``ROOMTAPE_SEGMENT_MAX_SECONDS``);
each close calls ``Shipper.ship`` on the event loop, the shipper uploads in the background. The spool is moto's
S3 server in its own process on loopback. Segment files have the sizes the recorder writes: VP8 640x480 30 fps
~1.5 Mbit/s and Opus ~32 kbit/s (random bytes: the content does not matter to an upload).

Measured, in real time over ``--seconds``:

- ``ship()`` cost on the event loop per call (the only work the live path does for the spool);
- lag from a segment's close to its object being stored (p50/p95/max): how far behind the live meeting the
  spool is, i.e. what a lost host loses beyond the open segment;
- process CPU per MB uploaded, against a baseline in the same run: the same objects uploaded with plain boto3
  ``upload_file`` in a loop (what a hand-written uploader would do; the shipper also HEADs each upload to check
  its size, and paces itself on the live closes);
- the worker's side: fetching one recording's segments with ``download_file`` against boto3 ``download_file``.

``--rtt-ms`` adds a round trip before each PUT and its HEAD, as a remote bucket would; with ``--senders 1``
(one upload at a time) against the default 4, it shows why the shipper sends several files at once.

Run: ``.venv/bin/python bench/spool.py [--tracks 16] [--seconds 30] [--segment-seconds 2] [--senders 4]
[--rtt-ms 0]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from roomtape.config import Settings
from roomtape.recording.spool import Shipper, spool_key, spool_storage
from roomtape.storage.base import ObjectStat, StorageBackend, download_file

VIDEO_BYTES_PER_S = 1_500_000 // 8
AUDIO_BYTES_PER_S = 32_000 // 8
KEY, SECRET = "AKIABENCHROOMTAPE", "bench-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Timed:
    """A backend that notes when each upload finished (delegates everything)."""

    def __init__(self, inner: StorageBackend, rtt: float = 0.0) -> None:
        self.inner = inner
        self.name = inner.name
        self.rtt = rtt
        self.done: dict[str, float] = {}

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        if self.rtt:
            await asyncio.sleep(2 * self.rtt)  # a remote bucket: one round trip for the PUT, one for the HEAD
        stat = await self.inner.put_file(local_path, key)
        self.done[key] = time.monotonic()
        return stat

    def __getattr__(self, item: str) -> Any:
        return getattr(self.inner, item)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace, endpoint: str, work: Path) -> dict[str, Any]:
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id=KEY, aws_secret_access_key=SECRET
    )
    client.create_bucket(Bucket="spool")
    client.create_bucket(Bucket="baseline")
    settings = Settings(
        data_dir=work,
        spool_url=f"s3://spool/nodes?region=us-east-1&endpoint={endpoint}&path_style=true",
        spool_access_key=KEY,
        spool_secret=SECRET,
    )
    storage = spool_storage(settings)
    assert storage is not None
    timed = Timed(storage[0], args.rtt_ms / 1000)
    shipper = Shipper((timed, storage[1]), senders=args.senders)  # type: ignore[arg-type]  # Timed delegates

    base = work / "recordings" / "rec"
    segments = int(args.seconds / args.segment_seconds)
    kinds = ["video" if i % 2 == 0 else "audio" for i in range(args.tracks)]
    files: list[tuple[float, str, Path]] = []  # (close time offset, rel, path)
    for t, kind in enumerate(kinds):
        size = int((VIDEO_BYTES_PER_S if kind == "video" else AUDIO_BYTES_PER_S) * args.segment_seconds)
        for n in range(segments):
            rel = f"s/p{t}/{kind}/{kind}-{n + 1:04d}.webm"
            path = base / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(size))
            (path.parent / "manifest.json").write_text("{}" * 200)
            # Tracks close their segments spread over the interval, as independent publishers do.
            files.append(((n + 1) * args.segment_seconds + t * args.segment_seconds / args.tracks, rel, path))
    files.sort()
    total_bytes = sum(p.stat().st_size for _, _, p in files)

    warm = work / "warm.bin"
    warm.write_bytes(b"w")
    await timed.inner.put_file(warm, "warm")  # the client's first request (endpoint, credentials): not the window's

    ship_us: list[float] = []
    closed_at: dict[str, float] = {}
    cpu0, t0 = time.process_time(), time.monotonic()
    for offset, rel, _ in files:
        delay = t0 + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        manifest = str(Path(rel).parent / "manifest.json")
        start = time.perf_counter()
        closed_at[rel] = time.monotonic()
        shipper.ship("rec", base, [rel, manifest])
        ship_us.append((time.perf_counter() - start) * 1e6)
    last_key = spool_key(storage[1], "rec", files[-1][1])
    for _ in range(int(120 / 0.01)):  # polls: the shipper has no "drained" event, and needs none
        if not shipper.pending and last_key in timed.done:
            break
        await asyncio.sleep(0.01)
    shipper_cpu = time.process_time() - cpu0
    lags = [timed.done[spool_key(storage[1], "rec", rel)] - closed_at[rel] for rel in closed_at]
    uploaded = total_bytes + len(files) * 400  # the manifests

    # Baseline: the same objects (segments and manifests), plain boto3 upload_file one after the other.
    cpu0, w0 = time.process_time(), time.monotonic()
    for _, rel, path in files:
        await asyncio.to_thread(client.upload_file, str(path), "baseline", rel)
        manifest = path.parent / "manifest.json"
        await asyncio.to_thread(client.upload_file, str(manifest), "baseline", f"{rel}.manifest.json")
    baseline_cpu, baseline_wall = time.process_time() - cpu0, time.monotonic() - w0

    # The worker's side: one recording's segments (a video and an audio track) fetched into another directory.
    wanted = [(rel, path.stat().st_size) for _, rel, path in files if "/p0/" in rel or "/p1/" in rel]
    fetch_dir = work / "worker"
    cpu0, w0 = time.process_time(), time.monotonic()
    for rel, _ in wanted:
        await download_file(timed, spool_key(storage[1], "rec", rel), fetch_dir / rel)
    fetch_cpu, fetch_wall = time.process_time() - cpu0, time.monotonic() - w0
    cpu0, w0 = time.process_time(), time.monotonic()
    for rel, _ in wanted:
        target = work / "baseline-fetch" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(client.download_file, "baseline", rel, str(target))
    base_fetch_cpu, base_fetch_wall = time.process_time() - cpu0, time.monotonic() - w0
    fetched_mb = sum(s for _, s in wanted) / 1e6
    await shipper.aclose()

    mb = uploaded / 1e6
    return {
        "tracks": args.tracks,
        "senders": args.senders,
        "added_rtt_ms": args.rtt_ms,
        "segment_seconds": args.segment_seconds,
        "seconds": args.seconds,
        "segments_shipped": len(files),
        "mb_shipped": round(mb, 2),
        "failures": shipper.failures,
        "ship_call_us": {"p50": round(pct(ship_us, 0.5), 1), "p99": round(pct(ship_us, 0.99), 1)},
        "close_to_spool_lag_s": {
            "p50": round(pct(lags, 0.5), 3),
            "p95": round(pct(lags, 0.95), 3),
            "max": round(max(lags), 3),
            "mean": round(statistics.fmean(lags), 3),
        },
        "upload_cpu_s_per_mb": round(shipper_cpu / mb, 4),
        "baseline_boto3_upload_cpu_s_per_mb": round(baseline_cpu / mb, 4),
        "baseline_boto3_upload_wall_s": round(baseline_wall, 2),
        "upload_cpu_ratio_vs_baseline": round(shipper_cpu / baseline_cpu, 2),
        "spool_cores_while_recording": round(shipper_cpu / args.seconds, 4),
        "fetch_mb": round(fetched_mb, 2),
        "fetch_mb_per_s": round(fetched_mb / fetch_wall, 1),
        "fetch_cpu_s_per_mb": round(fetch_cpu / fetched_mb, 4),
        "baseline_boto3_fetch_mb_per_s": round(fetched_mb / base_fetch_wall, 1),
        "baseline_boto3_fetch_cpu_s_per_mb": round(base_fetch_cpu / fetched_mb, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--segment-seconds", type=float, default=2.0)
    parser.add_argument("--senders", type=int, default=4, help="the shipper's uploads at a time")
    parser.add_argument("--rtt-ms", type=float, default=0.0, help="added round trip per request (remote bucket)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "spool.json"))
    args = parser.parse_args()
    port = free_port()
    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        load_before = os.getloadavg()
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(run(args, f"http://127.0.0.1:{port}", Path(tmp)))
        result = {
            "command": " ".join([".venv/bin/python", *sys.argv]),
            "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            **result,
            "notes": [
                "moto_server (S3) in its own process on loopback: no network latency, its CPU not counted",
                "upload CPU is this process's (event loop + boto3 threads) over the recording window",
            ],
        }
    finally:
        moto.terminate()
        moto.wait(10)
    print(json.dumps(result, indent=2))
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
