"""Track recording of a real browser: Chromium (fake camera and microphone) joins through the join page, its
audio and video are recorded through the VideoSDK API, and the person mutes and unmutes the microphone twice.

The recorder must write three audio files (one per unmuted span) that decode and add up to the time the
microphone was on, and one video file that decodes at the resolution the browser sent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from playwright.sync_api import Browser, Page
from tests.conftest import Server, start_server, stop_server
from tests.e2e.test_join_page import add_participant, admin, join

from roomtape.recording.manifest import load

pytestmark = pytest.mark.timeout(240)

BUCKET = "browser"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("e2e-recording")
    srv = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}")
    try:
        yield srv
    finally:
        stop_server(srv)


def track_recording(server: Server, action: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        f"{server.base_url}/v2/recordings/participant/track/{action}",
        json=body,
        headers={"Authorization": server.api_token},  # VideoSDK style: the bare token
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def click_at(page: Page, name: str) -> float:
    """Click a button of the join page; returns the moment of the click (midpoint of the call)."""
    before = time.time()
    page.get_by_role("button", name=name, exact=True).click()
    return (before + time.time()) / 2


def sent_video_size(page: Page) -> tuple[int, int]:
    """The size of the last frame the browser encoded for its published camera (outbound-rtp stats)."""
    size = page.evaluate(
        """async () => {
            const report = await window.roomtape.client.localTracks.get("video").sender.getStats();
            let out = null;
            report.forEach((s) => { if (s.type === "outbound-rtp") out = [s.frameWidth, s.frameHeight]; });
            return out;
        }"""
    )
    return int(size[0]), int(size[1])


def decode_audio_seconds(path: Path) -> float:
    """Decode every frame; returns the decoded duration in seconds."""
    with av.open(str(path)) as container:
        samples = sum(frame.samples for frame in container.decode(audio=0))
    return samples / 48000


def decode_video_sizes(path: Path) -> tuple[int, bool, set[tuple[int, int]]]:
    """Decode every frame; returns the frame count, whether the file starts on a keyframe, and the sizes."""
    with av.open(str(path)) as container:
        first_key = next(iter(container.demux(video=0))).is_keyframe
    with av.open(str(path)) as container:
        sizes = [(frame.width, frame.height) for frame in container.decode(video=0)]
    return len(sizes), first_key, set(sizes)


def wait_uploaded(api: httpx.Client, recording_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = api.get(f"/recordings/{recording_id}").json()["data"]["status"]
        if status == "UPLOADED":
            return
        time.sleep(0.25)
    raise AssertionError(f"recording {recording_id} is {status}, not UPLOADED")


def test_browser_mutes_twice_three_audio_files_and_video_at_sent_size(
    browser: Browser, server: Server, artifacts: Path
) -> None:
    with admin(server) as api:
        meeting = api.post("/meetings", json={"title": "recorded browser"}).json()["data"]
        alice = add_participant(api, meeting["id"], "Alice")
        page = browser.new_context().new_page()
        join(page, server, meeting["id"], alice["token"])
        # Keep the picture size while the machine is busy (Chromium would otherwise scale it down), so the
        # size the browser sends is the camera's all along.
        page.evaluate(
            """async () => {
                const sender = window.roomtape.client.localTracks.get("video").sender;
                const params = sender.getParameters();
                params.degradationPreference = "maintain-resolution";
                await sender.setParameters(params);
            }"""
        )
        camera = page.evaluate("document.getElementById('preview').srcObject.getVideoTracks()[0].getSettings()")
        time.sleep(1.0)

        body = {"roomId": meeting["id"], "participantId": alice["id"], "bucketDirPath": BUCKET}
        before = time.time()
        audio_id = track_recording(server, "start", {**body, "kind": "audio", "fileFormat": "webm"})["recordingId"]
        started = (before + time.time()) / 2
        video_id = track_recording(server, "start", {**body, "kind": "video", "fileFormat": "webm"})["recordingId"]

        # Talk, mute, unmute, talk, mute, unmute, talk.
        spans: list[tuple[float, float]] = []
        on_since = started
        for _ in range(2):
            time.sleep(2.5)
            muted_at = click_at(page, "Mute microphone")
            spans.append((on_since, muted_at))
            time.sleep(1.5)
            on_since = click_at(page, "Unmute microphone")
        time.sleep(2.5)
        before = time.time()
        track_recording(server, "stop", {"roomId": meeting["id"], "participantId": alice["id"], "kind": "audio"})
        # The last file ends somewhere while the stop call runs (seconds on a loaded machine): its span is known
        # to lie between the call's start and its return.
        stop_window = time.time() - before
        spans.append((on_since, before + stop_window / 2))
        sent_size = sent_video_size(page)
        track_recording(server, "stop", {"roomId": meeting["id"], "participantId": alice["id"], "kind": "video"})
        page.screenshot(path=str(artifacts / "recording-browser.png"))
        page.get_by_role("button", name="Leave").click()

        wait_uploaded(api, audio_id)
        wait_uploaded(api, video_id)

    [session_dir] = (server.data_dir / "storage" / BUCKET).iterdir()
    audio_dir = session_dir / alice["id"] / "audio"
    video_dir = session_dir / alice["id"] / "video"

    # Audio: three files, one per unmuted span, each decodes; together as long as the microphone was on.
    manifest = load(audio_dir)
    assert len(manifest.segments) == 3, manifest.segments
    files = sorted(audio_dir.glob("*.webm"))
    assert [f.name for f in files] == [s.file for s in manifest.segments]
    durations = [decode_audio_seconds(f) for f in files]
    unmuted = sum(end - start for start, end in spans)
    print(f"audio files {[round(d, 3) for d in durations]} s; unmuted spans {[round(e - s, 3) for s, e in spans]} s")
    slack = [0.3, 0.3, 0.3 + stop_window / 2]  # per file: muting is a click; the stop is a call of some length
    assert sum(durations) == pytest.approx(unmuted, abs=sum(slack)), (durations, spans, stop_window)
    for duration, (start, end), segment, tol in zip(durations, spans, manifest.segments, slack, strict=True):
        assert duration == pytest.approx(end - start, abs=tol), (durations, spans, stop_window)
        assert segment.codec == "opus" and segment.frames > 0

    # Video: never muted, so one file; it starts on a keyframe and every frame decodes at the sent size.
    vmanifest = load(video_dir)
    assert len(vmanifest.segments) == 1
    [segment] = vmanifest.segments
    frames, first_key, sizes = decode_video_sizes(video_dir / segment.file)
    assert first_key and frames == segment.frames > 30
    assert sizes == {sent_size} == {(camera["width"], camera["height"])}, (sizes, sent_size, camera)
    assert (segment.width, segment.height) == sent_size
