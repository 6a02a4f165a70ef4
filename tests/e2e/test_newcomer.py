"""A newcomer's path in Debian's Chromium, against ``roomtape serve`` started as ``make run`` starts it.

The server runs as a subprocess with the demo app (no ``--no-demo``, no ``apps create``, no test settings), on
a free port and a temporary data directory: what it prints is what a newcomer sees. From the sign-in link it
printed, the browser creates a meeting, gets two join links, joins twice (two fake-device participants),
records (start, pause, resume, stop), plays the composite, and the downloaded composite is decoded: two
tiles with pictures and audio that is not silent. Then bad input: an empty title, used, expired, incomplete
and foreign sign-in links. Screenshots go to ``tests/artifacts/newcomer-*.png``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect
from tests.conftest import BIN, free_port
from tests.integration.recording.compose_media import decode_audio

pytestmark = pytest.mark.timeout(600)


@dataclass
class DemoServer:
    """``roomtape serve`` with its demo app, and everything it printed so far in ``log``."""

    base_url: str
    data_dir: Path
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    account_id: str
    app_id: str
    api_token: str
    signin_link: str
    """The one-time sign-in link ``serve`` printed."""

    @property
    def log(self) -> str:
        return (self.data_dir / "server.log").read_text()

    def new_link(self, *args: str) -> str:
        """A fresh sign-in link from ``roomtape signin-link`` (as a newcomer who lost the first one)."""
        out = subprocess.run(
            [str(BIN / "roomtape"), "signin-link", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()


LINK = re.compile(r"^  (http://\S+/dashboard/signin/link#\S+)$", re.MULTILINE)


def start_demo_server(data_dir: Path, extra_env: dict[str, str] | None = None) -> DemoServer:
    """``roomtape serve`` as ``make run`` runs it (demo app on), on a free port; waits until it answers."""
    port = free_port()
    env = {**os.environ, "ROOMTAPE_DATA_DIR": str(data_dir), "ROOMTAPE_PORT": str(port), **(extra_env or {})}
    env.pop("ROOMTAPE_DATABASE_URL", None)  # the default: SQLite in the data dir
    out = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen([str(BIN / "roomtape"), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # the 2 shared cores are often busy
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("server did not start:\n" + (data_dir / "server.log").read_text())
        time.sleep(0.1)
    creds = json.loads((data_dir / "demo-credentials.json").read_text())
    printed = (data_dir / "server.log").read_text()
    links = LINK.findall(printed)
    assert len(links) == 1 and links[0].startswith(base), printed
    return DemoServer(base, data_dir, proc, env, creds["account_id"], creds["app_id"], creds["api_token"], links[0])


def stop_demo_server(server: DemoServer) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoServer]:
    srv = start_demo_server(tmp_path_factory.mktemp("newcomer"))
    try:
        yield srv
    finally:
        stop_demo_server(srv)


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1100, "height": 700})
    yield ctx
    ctx.close()


def shoot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"newcomer-{name}.png"), full_page=True)


def join(browser: Browser, link: str) -> tuple[BrowserContext, Page]:
    """A participant in a browser of their own: open the join link, join with the fake camera and microphone."""
    ctx = browser.new_context(viewport={"width": 900, "height": 600})
    page = ctx.new_page()
    page.goto(link)
    page.get_by_role("button", name="Join with camera and microphone").click()
    page.wait_for_function("window.roomtape && window.roomtape.ready === true", timeout=60_000)
    return ctx, page


def sees_video_of_another(page: Page) -> bool:
    return bool(page.evaluate("[...document.querySelectorAll('#remote video')].some(v => v.videoWidth > 0)"))


def wait_until(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def test_first_recorded_meeting_from_the_printed_link(
    server: DemoServer, browser: Browser, tmp_path: Path, artifacts: Path
) -> None:
    dash_ctx = browser.new_context(
        viewport={"width": 1100, "height": 800}, permissions=["clipboard-read", "clipboard-write"]
    )
    participants: list[BrowserContext] = []
    try:
        dash = dash_ctx.new_page()
        status, url = open_link(dash, server.signin_link)
        assert status == 303 and url == server.base_url + "/dashboard/meetings"

        # Create a meeting: its page opens.
        dash.get_by_label("Title").fill("My first recorded meeting")
        dash.get_by_role("button", name="Create meeting").click()
        dash.wait_for_url("**/dashboard/meetings/*")
        meeting_id = dash.url.rsplit("/", 1)[-1]
        assert dash.get_by_role("heading", name="My first recorded meeting").is_visible()
        expect(dash.get_by_role("button", name="Start recording")).to_be_disabled()  # nobody is in it yet

        # Two join links, each copyable.
        dash.get_by_role("button", name="Get my join link").click()
        expect(dash.locator("#join-links li")).to_have_count(1)
        dash.get_by_label("Their name").fill("Second participant")
        dash.get_by_role("button", name="Get a join link for them").click()
        expect(dash.locator("#join-links li")).to_have_count(2)
        mine = dash.get_by_role("textbox", name="Join link for Host").input_value()
        theirs = dash.get_by_role("textbox", name="Join link for Second participant").input_value()
        for link in (mine, theirs):
            assert link.startswith(f"{server.base_url}/join/{meeting_id}?token=")
        assert mine != theirs
        dash.get_by_role("button", name="Copy the join link for Second participant").click()
        assert dash.evaluate("navigator.clipboard.readText()") == theirs
        shoot(dash, artifacts, "meeting")

        # Both join from their browsers and see each other.
        pages = []
        for link in (mine, theirs):
            ctx, page = join(browser, link)
            participants.append(ctx)
            pages.append(page)
        for page in pages:
            wait_until(lambda page=page: sees_video_of_another(page), 60, "each participant to see the other")
        expect(dash.locator("#live-state")).to_contain_text("2 in the meeting", timeout=30_000)

        # Record: start on the meeting's page; pause, resume and stop on the recording's.
        start = dash.get_by_role("button", name="Start recording")
        expect(start).to_be_enabled()
        start.click()
        dash.wait_for_url("**/dashboard/recordings/*")
        recording_id = dash.url.rsplit("/", 1)[-1]
        badge = dash.locator("#recording-status [data-field=status]")
        expect(badge).to_have_text("RECORDING", timeout=30_000)
        time.sleep(3)
        dash.get_by_role("button", name="Pause").click()
        expect(badge).to_have_text("PAUSED", timeout=30_000)
        time.sleep(2)
        dash.get_by_role("button", name="Resume").click()
        expect(badge).to_have_text("RECORDING", timeout=30_000)
        time.sleep(3)
        dash.get_by_role("button", name="Stop").click()
        for page in pages:
            page.get_by_role("button", name="Leave").click()

        # Uploaded, the page reloads with the player; it plays.
        player = dash.locator("video#player")
        expect(player).to_be_attached(timeout=240_000)
        expect(badge).to_have_text("UPLOADED")
        player.evaluate("v => { v.muted = true; return v.play(); }")
        wait_until(lambda: player.evaluate("v => v.currentTime") > 1.0, 60, "the composite to play")
        assert player.evaluate("v => [v.videoWidth, v.videoHeight, v.error === null]") == [1280, 720, True]
        # Its track files and the timeline: both participants, audio and video each.
        lanes = dash.locator("#timeline .lane-row")
        expect(lanes).to_have_count(2)
        for i in range(2):
            assert lanes.nth(i).locator(".seg").count() >= 2
        tracks = dash.locator("a[data-group=tracks]")
        assert tracks.count() >= 4
        labels = " ".join(tracks.all_inner_texts())
        assert "Track audio" in labels and "Track video" in labels
        shoot(dash, artifacts, "recording")
        composite_url = dash.get_by_role("link", name="Composite").get_attribute("href")
        assert composite_url
    finally:
        for ctx in participants:
            ctx.close()
        dash_ctx.close()

    # The join tokens went through the access log as [redacted] only.
    log = server.log
    assert "/join/" in log and "token=[redacted]" in log
    for link in (mine, theirs):
        assert link.split("token=", 1)[1] not in log

    # The API agrees: the meeting's one recording, stopped by the call the page made, uploaded.
    kit = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}"
    auth = {"Authorization": f"Bearer {server.api_token}"}
    listed = httpx.get(f"{kit}/recordings", params={"meeting_id": meeting_id}, headers=auth, timeout=10).json()
    assert [r["id"] for r in listed["data"]] == [recording_id]
    data = listed["data"][0]
    assert (data["status"], data["stop_reason"]["reason"], data["kind"]) == ("UPLOADED", "API_CALL", "composite")

    # The composite itself: a grid of two tiles, both with a picture, and audio that is not silent.
    path = tmp_path / "composite.mp4"
    with httpx.stream("GET", composite_url, timeout=60) as response:
        assert response.status_code == 200
        with open(path, "wb") as f:
            for chunk in response.iter_bytes():
                f.write(chunk)
    with av.open(str(path)) as container:
        assert container.streams.video and container.streams.audio
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    assert len(frames) > 30 * 4  # about 6 s recorded, paused spans cut out
    height, width = frames[0].shape
    assert (width, height) == (1280, 720)
    # Grid of two: a tile per half. Chromium's fake camera draws a growing white disc on black, so a tile
    # with a picture has bright pixels (a black or placeholder tile has none) in every frame.
    for index in range(len(frames) // 4, 3 * len(frames) // 4, 10):
        frame = frames[index]
        for name, tile in (("left", frame[:, : width // 2]), ("right", frame[:, width // 2 :])):
            bright = float((tile > 60).mean())
            assert bright > 0.005 and tile.std() > 10, f"frame {index}: {name} tile is black ({bright:.3f} bright)"
    rate, samples = decode_audio(path)
    mono = np.abs(samples).max(axis=0)
    windows = mono[: len(mono) // (rate // 10) * (rate // 10)].reshape(-1, rate // 10).max(axis=1)
    print(f"audio peak {mono.max():.3f}, {int((windows > 0.02).sum())} of {len(windows)} 100 ms windows audible")
    assert mono.max() > 0.05 and (windows > 0.02).sum() >= 5


def test_front_page_is_for_people(server: DemoServer, context: BrowserContext) -> None:
    page = context.new_page()
    response = page.goto(server.base_url + "/")
    assert response is not None and response.status == 200
    assert response.headers["content-type"].startswith("text/html")
    assert page.get_by_role("heading", name="roomtape", exact=True).is_visible()
    assert "Self-hosted recording for real-time rooms" in page.locator("main").inner_text()
    docs = page.get_by_role("link", name="API docs").first
    assert docs.get_attribute("href") == "/docs"
    assert httpx.get(server.base_url + "/docs", timeout=10).status_code == 200
    # Signed out, the way in leads to the dashboard's sign-in.
    page.get_by_role("link", name="Sign in to the dashboard").click()
    page.wait_for_url("**/dashboard/signin**")
    assert page.get_by_role("heading", name="Sign in to the dashboard").is_visible()


def test_front_page_answers_api_clients_in_json(server: DemoServer) -> None:
    for accept in ("application/json", "*/*"):
        response = httpx.get(server.base_url + "/", headers={"Accept": accept}, timeout=10)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["name"] == "roomtape" and body["links"]["docs"] == "/docs"
        assert "Accept" in response.headers["vary"]


# --- the one-time sign-in link -----------------------------------------------------------------------------


def open_link(page: Page, link: str) -> tuple[int, str]:
    """Open a sign-in link; return the status and URL of the page its form post ends on."""
    with page.expect_response(lambda r: r.request.method == "POST" and "/dashboard/signin/link" in r.url) as posted:
        page.goto(link)
    response = posted.value
    if response.status == 303:
        page.wait_for_url(f"**{response.headers['location']}")
    else:
        response.finished()
        page.wait_for_load_state()
    return response.status, page.url


def session_cookie(context: BrowserContext) -> list[str]:
    return [c["value"] for c in context.cookies() if c["name"] == "roomtape_dashboard"]


def assert_signed_out(page: Page, server: DemoServer) -> None:
    page.goto(server.base_url + "/dashboard/meetings")
    assert "/dashboard/signin" in page.url


def test_a_sign_in_link_works_once(server: DemoServer, browser: Browser) -> None:
    link = server.new_link()
    assert link.startswith(server.base_url + "/dashboard/signin/link#") and link != server.signin_link
    first = browser.new_context()
    second = browser.new_context()
    try:
        page = first.new_page()
        status, url = open_link(page, link)
        assert status == 303 and url == server.base_url + "/dashboard/meetings"
        assert page.get_by_role("heading", name="Meetings").is_visible()
        assert session_cookie(first)
        # The secret left the address bar, and so the history, before the post.
        page.go_back()
        assert link.split("#", 1)[1] not in page.url
        page.go_forward()

        other = second.new_page()
        status, url = open_link(other, link)
        assert status == 410 and url == server.base_url + "/dashboard/signin/link"
        assert other.get_by_role("heading", name="That sign-in link does not work").is_visible()
        assert "already been used" in other.get_by_role("alert").inner_text()
        assert "roomtape signin-link" in other.locator("main").inner_text()
        assert session_cookie(second) == []
        assert_signed_out(other, server)
    finally:
        first.close()
        second.close()


def test_an_expired_sign_in_link_is_refused(server: DemoServer, context: BrowserContext) -> None:
    link = server.new_link("--ttl", "1")
    time.sleep(1.5)  # past its lifetime: the check is on the database's clock, not measured here
    page = context.new_page()
    status, _ = open_link(page, link)
    assert status == 410
    assert "expired" in page.get_by_role("alert").inner_text()
    assert session_cookie(context) == []
    assert_signed_out(page, server)


def test_incomplete_and_foreign_sign_in_links_are_refused(server: DemoServer, context: BrowserContext) -> None:
    page = context.new_page()
    # Cut before the fragment: nothing to post; the page says what to do.
    page.goto(server.base_url + "/dashboard/signin/link")
    missing = page.locator("#link-missing")
    missing.wait_for(state="visible")
    assert "incomplete" in missing.inner_text()
    status, _ = open_link(page, server.base_url + "/dashboard/signin/link#not-a-link-of-this-server")
    assert status == 400 and "not valid here" in page.get_by_role("alert").inner_text()
    assert session_cookie(context) == []
    # A post from another site is refused before the link is looked at (and the link stays usable).
    link = server.new_link()
    secret = link.split("#", 1)[1]
    cross = httpx.post(
        server.base_url + "/dashboard/signin/link",
        data={"secret": secret},
        headers={"Origin": "http://evil.example"},
        timeout=10,
    )
    assert cross.status_code == 403 and "set-cookie" not in cross.headers
    status, url = open_link(page, link)
    assert status == 303 and url.endswith("/dashboard/meetings")


def test_sign_in_link_secrets_never_reach_the_log(server: DemoServer) -> None:
    minted = server.new_link()
    log = server.log
    printed_secret = server.signin_link.split("#", 1)[1]
    assert log.count(printed_secret) == 1  # the line serve printed for the newcomer, nothing else
    assert minted.split("#", 1)[1] not in log
    assert "POST /dashboard/signin/link" in log  # the access log is on, and saw the posts


# --- bad input on the new pages --------------------------------------------------------------------------------


def meeting_ids(server: DemoServer) -> list[str]:
    kit = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}"
    got = httpx.get(
        f"{kit}/meetings", params={"per_page": 100}, headers={"Authorization": f"Bearer {server.api_token}"}
    )
    assert got.status_code == 200
    return [m["id"] for m in got.json()["data"]]


def test_an_empty_title_creates_nothing_and_says_why(
    server: DemoServer, context: BrowserContext, artifacts: Path
) -> None:
    page = context.new_page()
    open_link(page, server.new_link())
    before = meeting_ids(server)
    for title in ("", "   "):
        page.get_by_label("Title").fill(title)
        with page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith("/dashboard/meetings")) as r:
            page.get_by_role("button", name="Create meeting").click()
        assert r.value.status == 400
        page.wait_for_load_state()
        assert page.url == server.base_url + "/dashboard/meetings"
        alert = page.locator("#new-title-error")
        assert "Give the meeting a title" in alert.inner_text() and "Nothing was created" in alert.inner_text()
        assert page.get_by_label("Title").get_attribute("aria-invalid") == "true"
    shoot(page, artifacts, "empty-title")
    # Longer than the API stores (the field's maxlength stops typing it; a hand-made post is told so).
    long = page.request.post(
        server.base_url + "/dashboard/meetings", form={"title": "x" * 1025}, headers={"Origin": server.base_url}
    )
    assert long.status == 400 and "at most 1024 characters" in long.text()
    # From another site: refused.
    cross = page.request.post(
        server.base_url + "/dashboard/meetings", form={"title": "sneaky"}, headers={"Origin": "http://evil.example"}
    )
    assert cross.status == 403
    assert meeting_ids(server) == before
    # A join link needs a name: spaces only add nobody.
    page.get_by_label("Title").fill("Named people only")
    page.get_by_role("button", name="Create meeting").click()
    page.wait_for_url("**/dashboard/meetings/*")
    meeting_id = page.url.rsplit("/", 1)[-1]
    page.get_by_label("Their name").fill("   ")
    page.get_by_role("button", name="Get a join link for them").click()
    expect(page.locator("#action-status")).to_have_text("Give a name for the join link: nobody was added.")
    assert page.get_by_label("Their name").get_attribute("aria-invalid") == "true"
    assert page.locator("#join-links li").count() == 0
    kit = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}"
    people = httpx.get(
        f"{kit}/meetings/{meeting_id}/participants", headers={"Authorization": f"Bearer {server.api_token}"}
    )
    assert people.json()["data"] == []
    # And a meeting page that does not exist is a 404 page, not a crash.
    missing = page.goto(server.base_url + "/dashboard/meetings/no-such-meeting")
    assert missing is not None and missing.status == 404
    assert page.get_by_role("alert").inner_text() == "meeting not found"


def test_the_new_pages_fit_a_narrow_screen(server: DemoServer, browser: Browser, artifacts: Path) -> None:
    ctx = browser.new_context(viewport={"width": 375, "height": 740}, is_mobile=True)
    try:
        page = ctx.new_page()
        page.goto(server.base_url + "/")
        no_horizontal_overflow(page)
        open_link(page, server.new_link())
        no_horizontal_overflow(page)
        page.get_by_label("Title").fill("On a phone")
        page.get_by_role("button", name="Create meeting").click()
        page.wait_for_url("**/dashboard/meetings/*")
        page.get_by_role("button", name="Get my join link").click()
        expect(page.locator("#join-links li")).to_have_count(1)
        no_horizontal_overflow(page)
        shoot(page, artifacts, "meeting-375")
    finally:
        ctx.close()


def no_horizontal_overflow(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"{page.url} is {widths[0]} px wide in a {widths[1]} px viewport"
