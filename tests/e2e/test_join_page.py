"""Two people meet in Chromium through the join page: each page receives and decodes the other's media."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page
from tests.conftest import Server, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("e2e")
    srv = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}")
    try:
        yield srv
    finally:
        stop_server(srv)


def admin(server: Server) -> httpx.Client:
    base = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}"
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {server.api_token}"})


def add_participant(api: httpx.Client, meeting_id: str, name: str) -> dict[str, Any]:
    r = api.post(
        f"/meetings/{meeting_id}/participants",
        json={"custom_participant_id": name.lower(), "preset_name": "group_call_participant", "name": name},
    )
    assert r.status_code == 201, r.text
    return dict(r.json()["data"])


def join(page: Page, server: Server, meeting_id: str, token: str) -> None:
    page.goto(f"{server.base_url}/join/{meeting_id}?token={token}")
    page.get_by_role("button", name="Join with camera and microphone").click()
    page.wait_for_function("window.roomtape && window.roomtape.ready === true", timeout=15_000)


def remote_stats(page: Page) -> dict[str, Any]:
    return dict(page.evaluate("window.roomtape.stats()"))


def wait_media(page: Page, from_participant: str, timeout: float = 15.0) -> dict[str, dict[str, Any]]:
    """Wait until the page decodes video frames and receives audio energy from ``from_participant``."""
    deadline = time.monotonic() + timeout
    stats: dict[str, Any] = {}
    while time.monotonic() < deadline:
        stats = remote_stats(page)
        mine = {s["kind"]: s for s in stats.values() if s["participantId"] == from_participant}
        video, audio = mine.get("video"), mine.get("audio")
        if video and audio and video["framesDecoded"] > 30 and audio["totalAudioEnergy"] > 0:
            return mine
        time.sleep(0.25)
    raise AssertionError(f"no media from {from_participant}: {stats}")


def test_two_browsers_meet_and_see_each_other(browser: Browser, server: Server, artifacts: Path) -> None:
    with admin(server) as api:
        meeting = api.post("/meetings", json={"title": "browser meeting"}).json()["data"]
        alice = add_participant(api, meeting["id"], "Alice")
        bob = add_participant(api, meeting["id"], "Bob")

        a = browser.new_context(viewport={"width": 1000, "height": 700}).new_page()
        b = browser.new_context(viewport={"width": 420, "height": 800}).new_page()  # a narrow screen
        join(a, server, meeting["id"], alice["token"])
        join(b, server, meeting["id"], bob["token"])

        from_bob = wait_media(a, bob["id"])
        from_alice = wait_media(b, alice["id"])
        # Chromium's fake camera is 640x480 unless told otherwise; the SFU forwards it untouched.
        assert (from_bob["video"]["frameWidth"], from_bob["video"]["frameHeight"]) == (640, 480)
        assert from_alice["video"]["framesDecoded"] > 30
        # The page shows a captioned tile for the other person.
        bob_tiles = a.locator("figure.tile.video").filter(has_text="Bob")
        assert bob_tiles.count() == 1 and bob_tiles.is_visible()
        assert a.locator("figure.tile.screen_video").filter(has_text="Bob").is_hidden()  # not sharing
        a.screenshot(path=str(artifacts / "join-page-alice.png"))
        b.screenshot(path=str(artifacts / "join-page-bob-narrow.png"))

        # Mute reaches the other side as an event.
        b.get_by_role("button", name="Mute microphone").click()
        a.wait_for_function(
            "[...window.roomtape.client.tracks.values()].some(t => t.kind === 'audio' && t.muted)", timeout=5_000
        )

        # The session is live with both in it.
        live = api.get(f"/meetings/{meeting['id']}/active-session").json()["data"]
        assert live["live_participants"] == 2

        # Leaving removes Bob's tile from Alice's page.
        b.get_by_role("button", name="Leave").click()
        a.wait_for_function(f"!document.querySelector('[data-participant=\"{bob['id']}\"]')", timeout=10_000)
        a.get_by_role("button", name="Leave").click()
