"""Hosts that share nothing but PostgreSQL, Redis and the spool: an api node, a media node and a worker, each
with a data directory of its own. A meeting recorded on the media node is SIGKILLed mid-recording; the api
node's reaper keeps what reached the spool (1 s segments), and the worker renders and uploads it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from pathlib import Path

import httpx
import pytest
from tests.integration.cluster.deployment import deployment
from tests.integration.cluster.test_scaleout import _decode, _fetch, _join, _json, _wait

from roomtape.agents import RoomClient

pytestmark = pytest.mark.timeout(240)


async def test_a_media_node_on_its_own_host_dies_and_the_worker_renders_what_it_spooled(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    clients: list[RoomClient] = []
    async with deployment(
        tmp_path,
        media_nodes=0,
        workers=0,
        ROOMTAPE_SPOOL_URL=f"file://{spool}",
        ROOMTAPE_SEGMENT_MAX_SECONDS="1",
    ) as dep:
        host_a, host_w = tmp_path / "host-a", tmp_path / "host-w"
        dep.media.append(dep.start_server("media-0", "media", ROOMTAPE_DATA_DIR=str(host_a)))
        dep.workers.append(dep.start_worker("worker-0", ROOMTAPE_DATA_DIR=str(host_w)))
        await asyncio.to_thread(dep.wait_healthy, dep.media[0])
        await asyncio.to_thread(dep.registered, 1)
        try:
            async with httpx.AsyncClient(headers=dep.headers, timeout=60) as http:
                meeting = (await _json(await http.post(f"{dep.rtk}/meetings", json={"title": "far"})))["id"]
                clients.append(await _join(dep, http, meeting, "p", 440.0))
                rid = (await _json(await http.post(f"{dep.rtk}/recordings", json={"meeting_id": meeting})))["id"]
                await _wait(http, dep, rid, {"RECORDING"}, 30)
                await asyncio.sleep(4)
                sent = sorted(p.name for p in (spool / rid).rglob("*.webm"))
                assert len(sent) >= 4, sent  # audio and video pieces, while recording
                dep.media[0].process.send_signal(signal.SIGKILL)
                killed_at = time.time()
                done = await _wait(http, dep, rid, {"UPLOADED", "ERRORED"}, 120)
                assert done["status"] == "UPLOADED", done
                assert done["stop_reason"]["reason"] == "INTERNAL_ERROR", done
                got = _decode(await _fetch(http, done["download_url"], tmp_path / "far.mp4"))
        finally:
            for client in clients:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(client.leave(), 5)
    # About 4 s recorded, segments of 1 s: at most the open one (~1 s) is lost with the host.
    # 30 fps video; AAC frames of 1024 samples at 48 kHz (~47 a second).
    assert got.get("VideoFrame", 0) >= 2.5 * 30 and got.get("AudioFrame", 0) >= 2.5 * 47, got
    print(f"\nkilled at {killed_at:.0f}; composite from the spool: {got}")
    assert not list((tmp_path / "data").rglob("*.webm"))  # the api node never held a track file
    assert list(host_a.rglob("*.webm"))  # the dead host's disk keeps its copies, out of reach
    assert not list(host_w.rglob("*.webm")) and not list(spool.rglob("*.webm"))  # uploaded, then cleaned up
