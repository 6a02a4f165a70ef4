"""Chromium (fake camera and microphone, driven by Playwright) meets a Python client in a roomtape meeting.

The page receives and decodes the Python client's media (checked in the page), and the Python client decodes
the browser's.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from playwright.async_api import async_playwright
from tests.conftest import Server
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.media.roomtape_media_peers import HEIGHT, WIDTH, CounterVideoTrack, ToneAudioTrack
from tests.integration.signaling.signaling_helpers import Api, Received, read_track, run_signaling_server, wait_for

from roomtape.agents import ClientEvent, RoomClient


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("browser-python"))


async def test_chromium_and_python_client_exchange_media(server: Server, artifacts: Path) -> None:
    api = Api(server)
    meeting = api.meeting(title="browser and python")
    py_id, py_token = api.participant(meeting, "python")
    browser_id, browser_token = api.participant(meeting, "chromium")

    client = RoomClient(server.base_url, py_token)
    received: dict[str, Received] = {}
    readers: list[asyncio.Task[None]] = []

    def on_track(event: ClientEvent) -> None:
        assert event.track is not None and event.track.track is not None
        if event.track.participant_id == browser_id and event.track.kind in ("audio", "video"):
            received[event.track.kind] = got = Received()
            readers.append(read_track(event.track.track, got))

    client.on("track", on_track)
    left: list[str] = []
    client.on("participant_left", lambda e: left.append(e.participant.id if e.participant else "?"))
    await client.join()
    video = CounterVideoTrack()
    video.counter = 7000
    await client.publish(audio=ToneAudioTrack(523.0), video=video)

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{server.base_url}/join/{meeting}?token={browser_token}")
            await page.get_by_role("button", name="Join with camera and microphone").click()
            await page.wait_for_function("window.roomtape && window.roomtape.ready === true", timeout=15_000)

            # In the page: the Python client's video decodes at its size and its audio carries energy.
            deadline = time.monotonic() + 20
            from_py: dict[str, Any] = {}
            while time.monotonic() < deadline:
                stats = await page.evaluate("window.roomtape.stats()")
                from_py = {s["kind"]: s for s in stats.values() if s["participantId"] == py_id}
                v, a = from_py.get("video"), from_py.get("audio")
                if v and a and v["framesDecoded"] >= 45 and a["totalAudioEnergy"] > 0.01:
                    break
                await asyncio.sleep(0.25)
            assert from_py.get("video", {}).get("framesDecoded", 0) >= 45, from_py
            assert (from_py["video"]["frameWidth"], from_py["video"]["frameHeight"]) == (WIDTH, HEIGHT)
            assert from_py["audio"]["totalAudioEnergy"] > 0.01, from_py
            # The tile is labelled with the Python participant's name and is playing.
            tile = page.locator("figure.tile.video").filter(has_text="python")
            assert await tile.count() == 1
            playing = await tile.locator("video").evaluate("v => v.readyState >= 2 && v.videoWidth > 0")
            assert playing
            await page.screenshot(path=str(artifacts / "join-page-with-python-client.png"))

            # In Python: the browser's fake camera (640x480) and microphone decode.
            await wait_for(
                lambda: (
                    "video" in received
                    and "audio" in received
                    and len(received["video"].counters) >= 45
                    and len(received["audio"].audio) >= 100
                ),
                within=20,
                what="the browser's audio and video in the Python client",
            )
            audio = np.concatenate(received["audio"].audio).astype(np.float64)
            assert np.sqrt(np.mean(audio**2)) > 50, "the browser's microphone (fake beeps) should not be silent"

            # Join tokens travel in the WebSocket URL (browsers cannot set headers there): never in the log.
            log = (server.data_dir / "server.log").read_text()
            assert "/ws?token=[redacted]" in log and browser_token not in log and py_token not in log

            # Both stayed in the meeting all along: no socket closed, nobody was seen leaving.
            closed = await page.evaluate("window.roomtape.closed || null")
            assert closed is None, f"the browser's signaling socket closed: {closed}"
            assert left == [], f"the Python client saw {left} leave"
            assert browser_id in client.participants

            # Leaving from the page is seen by the Python client.
            await page.get_by_role("button", name="Leave").click()
            await wait_for(lambda: left == [browser_id], within=10, what="the browser's participant_left")
        finally:
            await browser.close()
            await client.leave()
            for task in readers:
                task.cancel()
            await asyncio.gather(*readers, return_exceptions=True)
