"""Glass-to-HLS latency of a livestream: a flash sent by a publisher → the HLS segment holding it listed / fetched.

A ``roomtape serve`` subprocess (SQLite) and one aiortc publisher in this process (``roomtape.agents.RoomClient``)
sending the flash/beep test pattern of ``tests/integration/recording/compose_media`` (black 320x240 pictures,
white for 0.1 s from every beat, a beep with it), with a beat every ``--period`` seconds of wall clock. Frame
k is captured and sent at ``epoch + k / 30``, so a flash's send time is its beat's time. For each ``--sizes``
entry a livestream is started with the Cloudflare SDK (HLS only, that size) and its signed playlist is polled
over HTTP every ``--poll-ms``; each segment is fetched as soon as it is listed. For each flash the script finds
the segment whose decoded frames hold its first white frame and measures, from the beat:

- ``listed``: the first playlist answer listing that segment;
- ``fetchable``: the segment's bytes received (fetched right after the listing);
- ``position_in_segment``: where the flash sits in its segment (a segment is listed once complete, so a flash at
  its start waits about a segment longer than one at its end).

A flash is matched to the latest beat before its listing, which holds while the latency stays below
``--period`` (checked: consecutive flashes must be one period apart in the stream's timestamps too). The load
average and the server's CPU time go into the JSON: the machine is shared. There is no in-tree baseline for
this latency; the figures are read against the engine's design floor (render lag 1.5 s + up to one 2 s
segment + encoding and the poll interval), printed beside them.

Run: ``.venv/bin/python bench/livestream.py [--sizes 640x360,1280x720] [--flashes 6] [--period 7]``; writes
``bench/results/livestream.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aioice.ice
import av
import httpx
from cloudflare import AsyncCloudflare
from live_composite import start_server, tree_cpu

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.recording.compose_media import BeepAudioTrack, FlashVideoTrack, Metronome  # noqa: E402

from roomtape.agents import RoomClient  # noqa: E402

RENDER_LAG = 1.5
SEGMENT = 2.0
_SEGMENT_LINE = re.compile(r"^(seg\d+\.ts)$", re.MULTILINE)
_EXTINF = re.compile(r"#EXTINF:([\d.]+),?\s*\n(seg\d+\.ts)")


def onsets_in(segments: list[tuple[str, bytes]]) -> list[tuple[str, float, float]]:
    """(segment, pts of the flash's first white frame, its offset in the segment) for each flash onset."""
    found: list[tuple[str, float, float]] = []
    previous = 0.0
    for name, data in segments:
        first_pts: float | None = None
        with av.open(io.BytesIO(data), format="mpegts") as container:
            for frame in container.decode(container.streams.video[0]):
                t = float(frame.time or 0.0)
                first_pts = t if first_pts is None else first_pts
                y = frame.to_ndarray(format="gray")
                h, w = y.shape
                luma = float(y[h * 3 // 8 : h * 5 // 8, w * 3 // 8 : w * 5 // 8].mean())
                if luma > 128 >= previous:
                    found.append((name, t, t - first_pts))
                previous = luma
    return found


async def stream_once(
    cf: AsyncCloudflare, ids: dict[str, str], meeting_id: str, size: str, args: argparse.Namespace, epoch: float
) -> dict[str, Any]:
    """One livestream at ``size``: poll, fetch, decode, match flashes to beats."""
    width, height = (int(v) for v in size.lower().split("x"))
    started = await cf.realtime_kit.livestreams.start_livestreaming_a_meeting(
        meeting_id, **ids, video_config={"width": width, "height": height}
    )
    assert started.data is not None and started.data.playback_url
    playback = str(started.data.playback_url)
    base = playback.rsplit("/", 1)[0]
    listed_at: dict[str, float] = {}
    fetched_at: dict[str, float] = {}
    durations: dict[str, float] = {}
    segments: list[tuple[str, bytes]] = []
    polls = 0
    t_start = time.time()
    async with httpx.AsyncClient(timeout=10) as http:
        while len(segments) * SEGMENT < args.flashes * args.period + 2 * SEGMENT:
            got = await http.get(playback)
            now = time.time()
            polls += 1
            if got.status_code == 200:
                durations.update({name: float(d) for d, name in _EXTINF.findall(got.text)})
                for name in _SEGMENT_LINE.findall(got.text):
                    if name in listed_at:
                        continue
                    listed_at[name] = now
                    seg = await http.get(f"{base}/{name}")
                    fetched_at[name] = time.time()
                    if seg.status_code == 200:
                        segments.append((name, seg.content))
            if time.time() - t_start > args.flashes * args.period + 60:
                raise RuntimeError("the stream did not produce the segments in time")
            await asyncio.sleep(args.poll_ms / 1000)
    await cf.realtime_kit.livestreams.stop_livestreaming_a_meeting(meeting_id, **ids)
    metronome = Metronome(epoch, 0.0, args.period)
    flashes: list[dict[str, Any]] = []
    for name, pts, position in await asyncio.to_thread(onsets_in, segments):
        beats = metronome.beat_times(listed_at[name] - args.period, listed_at[name])
        beat = beats[-1]
        flashes.append(
            {
                "segment": name,
                "beat": round(beat, 3),
                "stream_pts": round(pts, 3),
                "position_in_segment": round(position, 3),
                "segment_duration": durations.get(name),
                "listed": round(listed_at[name] - beat, 3),
                "fetchable": round(fetched_at[name] - beat, 3),
            }
        )
    steps = [
        (round(b["beat"] - a["beat"], 3), round(b["stream_pts"] - a["stream_pts"], 3))
        for a, b in itertools.pairwise(flashes)
    ]
    consistent = all(abs(beat - args.period) < 0.05 and abs(pts - args.period) < 0.1 for beat, pts in steps)
    listed = [f["listed"] for f in flashes]
    fetchable = [f["fetchable"] for f in flashes]
    return {
        "size": size,
        "livestream_id": started.data.id,
        "segments_fetched": len(segments),
        "playlist_polls": polls,
        "flashes": flashes,
        "consecutive_steps_beat_vs_pts": steps,
        "matching_consistent": consistent,
        "listed_seconds": _stats(listed),
        "fetchable_seconds": _stats(fetchable),
    }


def _stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {
        "p50": round(statistics.median(values), 3),
        "min": round(min(values), 3),
        "max": round(max(values), 3),
        "n": len(values),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]
    workdir = Path(tempfile.mkdtemp(prefix="roomtape-bench-livestream-"))
    proc, app, base, _ = start_server(workdir, live=True)
    results: list[dict[str, Any]] = []
    try:
        cf = AsyncCloudflare(api_token=app["api_token"], base_url=base, max_retries=0)
        ids = {"account_id": app["account_id"], "app_id": app["app_id"]}
        meeting = (await cf.realtime_kit.meetings.create(ids["app_id"], account_id=ids["account_id"])).data
        assert meeting is not None and meeting.id
        person = (
            await cf.realtime_kit.meetings.add_participant(
                meeting.id, **ids, custom_participant_id="flash", preset_name="group_call_host"
            )
        ).data
        assert person is not None and person.token
        epoch = math.floor(time.time()) + 2.0
        metronome = Metronome(epoch, 0.0, args.period)
        client = RoomClient(base, person.token)
        await client.join()
        await client.publish(video=FlashVideoTrack(metronome), audio=BeepAudioTrack(metronome, 1000.0))
        await asyncio.sleep(3.0)
        for size in args.sizes.split(","):
            load_before = os.getloadavg()
            cpu_before = tree_cpu(proc.pid)
            t0 = time.monotonic()
            entry = await stream_once(cf, ids, meeting.id, size, args, epoch)
            wall = time.monotonic() - t0
            entry["server_cpu_per_wall_second"] = round((tree_cpu(proc.pid) - cpu_before) / wall, 3)
            entry["load_average_before"] = [round(x, 2) for x in load_before]
            entry["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
            print(json.dumps({k: v for k, v in entry.items() if k != "flashes"}), flush=True)
            results.append(entry)
        await client.leave()
        await cf.close()
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"runs": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="640x360,1280x720", help="livestream sizes, one stream each")
    parser.add_argument("--flashes", type=int, default=6, help="flashes measured per stream")
    parser.add_argument("--period", type=float, default=7.0, help="seconds between flashes (> the latency)")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="playlist poll interval")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "livestream.json")
    args = parser.parse_args()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    result = asyncio.run(run(args))
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_start": load_at_start}
    machine["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "when": when,
        "machine": machine,
        "scenario": (
            "1 aiortc publisher (flash/beep 320x240 30 fps VP8 + Opus, a flash every "
            f"{args.period:g} s), livestream HLS only at {args.sizes}, playlist polled every {args.poll_ms:g} ms"
        ),
        "design_floor_seconds": {
            "render_lag": RENDER_LAG,
            "segment": SEGMENT,
            "note": "listed ≈ render lag + (segment length - position of the flash in its segment) + encode/mux",
        },
        **result,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for entry in result["runs"]:
        print(entry["size"], "listed", entry["listed_seconds"], "fetchable", entry["fetchable_seconds"])


if __name__ == "__main__":
    main()
