"""A meeting recording of Chromium (fake camera and microphone, the join page) and a Python participant, driven
by the Cloudflare SDK against a ``roomtape serve`` subprocess: start → RECORDING → pause → resume → stop →
UPLOADED; the downloaded composite decodes with the expected duration, streams and two-tile grid."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from cloudflare import AsyncCloudflare
from playwright.async_api import async_playwright
from tests.conftest import Server, start_server, stop_server
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.media.roomtape_media_peers import CounterVideoTrack, ToneAudioTrack
from tests.integration.recording.compose_media import band, decode_audio
from tests.integration.recording.test_composite_sync import (
    SERVER_ENV,
    analyse,
    download,
    recording,
    statuses,
    wait_status,
)
from tests.integration.signaling.signaling_helpers import Api

from roomtape.agents import ClientEvent, RoomClient

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("browser-recording")
    srv = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}", SERVER_ENV)
    try:
        yield srv
    finally:
        stop_server(srv)


async def test_chromium_and_python_meeting_recording_lifecycle(server: Server, tmp_path: Path) -> None:
    api = Api(server)
    meeting = api.meeting(title="browser and python, recorded")
    py_id, py_token = api.participant(meeting, "python")
    browser_id, browser_token = api.participant(meeting, "chromium")

    client = RoomClient(server.base_url, py_token)
    from_browser: set[str] = set()

    def on_track(event: ClientEvent) -> None:
        if event.track is not None and event.track.participant_id == browser_id:
            from_browser.add(event.track.kind)

    client.on("track", on_track)
    await client.join()
    await client.publish(audio=ToneAudioTrack(523.0), video=CounterVideoTrack())

    cf = AsyncCloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0)
    ids = {"account_id": server.account_id, "app_id": server.app_id}
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{server.base_url}/join/{meeting}?token={browser_token}")
            await page.get_by_role("button", name="Join with camera and microphone").click()
            await page.wait_for_function("window.roomtape && window.roomtape.ready === true", timeout=30_000)
            deadline = time.monotonic() + 30
            while not {"audio", "video"} <= from_browser:  # the browser publishes (and reserves a screen slot)
                assert time.monotonic() < deadline, f"the browser's tracks did not arrive: {from_browser}"
                await asyncio.sleep(0.1)

            started = await cf.realtime_kit.recordings.start_recordings(
                server.app_id,
                account_id=server.account_id,
                meeting_id=meeting,
                video_config={"codec": "H264", "width": 640, "height": 360},
                audio_config={"channel": "stereo", "codec": "AAC"},
            )
            assert started.data is not None
            rid = started.data.id
            await wait_status(server, rid, ("RECORDING",), 30)
            active = await cf.realtime_kit.recordings.get_active_recordings(meeting, **ids)
            assert active.data.id == rid and active.data.status == "RECORDING"
            await asyncio.sleep(3.0)
            paused = await cf.realtime_kit.recordings.pause_resume_stop_recording(rid, **ids, action="pause")
            assert paused.data is not None and paused.data.status == "PAUSED"
            await asyncio.sleep(2.0)
            resumed = await cf.realtime_kit.recordings.pause_resume_stop_recording(rid, **ids, action="resume")
            assert resumed.data is not None and resumed.data.status == "RECORDING"
            await asyncio.sleep(3.0)
            stopped = await cf.realtime_kit.recordings.pause_resume_stop_recording(rid, **ids, action="stop")
            assert stopped.data is not None and stopped.data.status in ("UPLOADING", "UPLOADED")
            await page.get_by_role("button", name="Leave").click()
        finally:
            await browser.close()
            await client.leave()

    deadline = time.monotonic() + 180
    while True:
        one = (await cf.realtime_kit.recordings.get_one_recording(rid, **ids)).data
        if one.status in ("UPLOADED", "ERRORED") or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    await cf.close()
    assert one.status == "UPLOADED", (await recording(server, rid)).error
    assert one.download_url and one.download_url_expiry and one.started_time and one.stopped_time
    assert one.stop_reason is not None and one.stop_reason.reason == "API_CALL"
    assert await statuses(server, rid) == ["INVOKED", "RECORDING", "PAUSED", "RECORDING", "UPLOADING", "UPLOADED"]

    path = await download(one.download_url, tmp_path / "meeting.mp4")
    rec = await recording(server, rid)
    assert rec.started_time is not None and rec.stopped_time is not None
    expected = (rec.stopped_time - rec.started_time).total_seconds() - rec.paused_seconds
    composite = analyse(path)
    print(f"composite {composite.duration:.3f} s, expected {expected:.3f} s; participants {rec.config['composite']}")
    assert (composite.video_codec, composite.audio_codec, composite.size) == ("h264", "aac", (640, 360))
    assert abs(composite.duration - expected) <= 0.1
    assert 1.5 <= rec.paused_seconds <= 15.0 and one.recording_duration == round(expected)  # busy machine: generous
    assert set(rec.config["composite"]["participants"]) == {py_id, browser_id}

    # Layout: a two-tile grid, both tiles showing a picture (not the dark-grey placeholder) in the middle of
    # the recording: the Python client's counter blocks and the browser's moving test pattern.
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    middle = frames[len(frames) // 2]
    halves = {"left": middle[60:300, 20:300], "right": middle[60:300, 340:620]}
    for name, tile in halves.items():
        assert tile.std() > 10, f"{name} tile has no picture (std {tile.std():.1f})"
    counter_tile = max(halves, key=lambda k: float((halves[k] > 200).mean()))
    assert (halves[counter_tile] > 200).mean() > 0.05  # the counter's white blocks
    # Audio: the Python participant's 523 Hz tone is in the mix.
    rate, samples = decode_audio(path)
    mono = samples[0].astype(np.float64)
    assert band(mono, rate, composite.duration / 2, 523.0, 0.5) > 0.05
