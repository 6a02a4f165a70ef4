"""The dashboard's meeting page plays the meeting's live stream in Debian's Chromium, through the vendored hls.js.

Two aiortc publishers (flash + beep) are in a meeting; the livestream is started through the Cloudflare SDK;
the meeting page (signed in with the API token) finds it by polling, attaches hls.js (served from
``/static/vendor/``: every request the page makes stays on the server's origin) to its signed playback URL
and plays it: ``videoWidth`` is the stream's, ``currentTime`` advances. Stopping it from the page ends the
stream (IDLE) and takes the player away.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cloudflare import AsyncCloudflare
from playwright.async_api import async_playwright
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.livestream.test_livestream_engine import publish_flash
from tests.integration.recording.recording_server import LiveServer, live_server, open_meeting, wait_for

from roomtape.db.models import Livestream

pytestmark = pytest.mark.timeout(240)

WITHIN_MS = 60_000
"""How long the page may take to find the stream and play it (2 s polls, 2 s segments, two shared cores)."""

SAMPLE_TILES = """v => new Promise(ok => {
    const c = document.createElement('canvas'); c.width = 64; c.height = 36;
    const g = c.getContext('2d', {willReadFrequently: true});
    const tiles = [[], []];
    const luma = (x, y) => { const d = g.getImageData(x, y, 8, 8).data; let s = 0;
        for (let i = 0; i < d.length; i += 4) s += 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
        return s / (d.length / 4); };
    let n = 0;
    const t = setInterval(() => {
        g.drawImage(v, 0, 0, 64, 36); tiles[0].push(luma(12, 14)); tiles[1].push(luma(44, 14));
        if (++n >= 50) { clearInterval(t); ok(tiles); }
    }, 50);
})"""
"""Mean luma at the centres of the grid's two tiles, 50 times over 2.5 s."""


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server") as server:
        yield server


async def test_meeting_page_plays_the_live_stream_with_hls_js(srv: LiveServer, artifacts: Path) -> None:
    room = await open_meeting(srv, "alice", "bob")
    epoch = math.floor(time.time()) + 1.0
    pcs = [await publish_flash(room, name, epoch) for name in ("alice", "bob")]
    ids = {"account_id": srv.account_id, "app_id": srv.app_id}
    try:
        async with AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0) as cf:
            await asyncio.sleep(1.0)
            started = await cf.realtime_kit.livestreams.start_livestreaming_a_meeting(
                room.meeting.id, **ids, video_config={"width": 640, "height": 360}
            )
            assert started.data is not None
            lid = str(started.data.id)
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                context = await browser.new_context(viewport={"width": 1100, "height": 900}, bypass_csp=False)
                page = await context.new_page()
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url))
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                url = f"{srv.base_url}/dashboard/meetings/{room.meeting.id}"
                await page.goto(url)
                await page.get_by_label("API token").fill(srv.api_token)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(url)

                player = page.locator("#livestream-player")
                await player.wait_for(state="visible", timeout=WITHIN_MS)
                box = page.locator("#livestream")
                assert await box.get_attribute("data-playing") == lid
                assert await box.get_attribute("data-player") == "hls.js"
                playing = "v => v.videoWidth > 0 && v.currentTime > 1 && !v.paused"
                await player.evaluate(  # wait (polling in the page) until it plays
                    f"""v => new Promise((ok, no) => {{
                        const t0 = Date.now();
                        const check = () => ({playing})(v) ? ok() : Date.now() - t0 > {WITHIN_MS} ? no(
                            new Error('not playing: ' + JSON.stringify({{w: v.videoWidth, t: v.currentTime,
                            paused: v.paused, state: v.readyState, err: v.error && v.error.message}}))) :
                            setTimeout(check, 200);
                        check();
                    }})"""
                )
                size = await player.evaluate("v => [v.videoWidth, v.videoHeight]")
                assert size == [640, 360]
                first = float(await player.evaluate("v => v.currentTime"))
                await asyncio.sleep(3.0)
                later = float(await player.evaluate("v => v.currentTime"))
                print(f"currentTime {first:.2f} s → {later:.2f} s over 3 s of wall clock")
                assert later > first + 1.0, (first, later)
                # Decoded pictures: both tiles flash once a second (sampled from the element every 50 ms).
                lumas = await player.evaluate(SAMPLE_TILES)
                print(f"tile luma min/max: {[(round(min(t)), round(max(t))) for t in lumas]}")
                for tile in lumas:
                    assert max(tile) - min(tile) > 60, lumas
                assert await page.locator("#livestream-state").inner_text() == "Live stream LIVE."
                await page.screenshot(path=str(artifacts / "dashboard-livestream-player.png"), full_page=True)

                hls = [r for r in requests if "/hls/" in r]
                assert any(r.endswith("/index.m3u8") for r in hls) and any(r.endswith(".ts") for r in hls)
                assert f"{srv.base_url}/static/vendor/hls.min.js" in requests
                assert all(r.startswith(srv.base_url) for r in requests), [
                    r for r in requests if not r.startswith(srv.base_url)
                ]
                assert errors == []

                # Stopped from the page: IDLE, the player goes, "Start live stream" is back.
                await page.get_by_role("button", name="Stop live stream").click()

                async def idle() -> bool:
                    rows = await srv.rows(Livestream, Livestream.id == lid)
                    return bool(rows) and rows[0].status == "IDLE"

                await wait_for(idle, 60, "IDLE")
                await player.wait_for(state="hidden", timeout=WITHIN_MS)
                await page.get_by_role("button", name="Start live stream").wait_for(timeout=WITHIN_MS)
            finally:
                await browser.close()
    finally:
        for pc in pcs:
            await pc.close()
