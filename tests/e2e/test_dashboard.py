"""The dashboard in Debian's Chromium, on a real recorded agent session.

An agent (``roomtape.agents.JobContext``) and a caller (``RoomClient``) talk in a meeting over WebRTC, the
agent speaking espeak-ng phrases and reporting five transcript items; a script records the meeting through
the RealtimeKit API (composite WebM + separate MP3, track files, timing manifests), and two webhooks (one
answering 200, one 503) get its status updates. Then the browser: signed-out visitors go to sign-in; the
lists show the recording; the recording page plays it with the transcript highlighted and scrolled into
view, seeks on click, downloads the right bytes; a live meeting is recorded, paused, resumed and stopped
from the pages; a failed upload is retried, a composite rendered again and deleted. Every page is
screenshotted (``tests/artifacts/dashboard-*.png``), also at 375 px wide without horizontal overflow.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import av
import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from tests.conftest import Server, run_sync, start_server, stop_server
from tests.integration.agents.test_agent_sdk import RATE, espeak
from tests.integration.media.roomtape_media_peers import ToneAudioTrack
from tests.integration.signaling.signaling_helpers import SERVER_ENV, Api

from roomtape.agents import AudioPushTrack, JobContext, RoomClient, RoomOptions

pytestmark = pytest.mark.timeout(600)

TURNS = (
    ("agent", "Hello, thanks for calling. How can I help?"),
    ("user", "My order has not arrived yet."),
    ("agent", "Sorry to hear that. Let me check the order."),
    ("user", "The number is four two seven."),
    ("agent", "Found it. It arrives tomorrow morning."),
)
"""Five turns: agent, caller, agent, caller, agent; each a transcript item at the time it was spoken."""

FINAL = ("UPLOADED", "ERRORED")


# --- a webhook receiver on loopback ---------------------------------------------------------------------------


class _Hook(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", "0")))
        body = b"ok" if self.status < 300 else b"receiver is down for maintenance"
        self.send_response(self.status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def hook_server(status: int) -> http.server.ThreadingHTTPServer:
    handler = type(f"Hook{status}", (_Hook,), {"status": status})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the recorded agent session --------------------------------------------------------------------------------


@dataclass
class Recorded:
    """What the fixture recorded."""

    recording_id: str
    meeting_id: str
    session_id: str
    agent_id: str
    user_id: str
    items: list[dict[str, Any]] = field(default_factory=list)
    """The transcript as the API exports it for the recording (times on the recording's clock)."""


def auth(server: Server) -> dict[str, str]:
    return {"Authorization": f"Bearer {server.api_token}"}


async def wait_status(
    http: httpx.AsyncClient, recording_id: str, wanted: tuple[str, ...], within: float
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        data: dict[str, Any] = (await http.get(f"/recordings/{recording_id}")).json()["data"]
        if data["status"] in wanted:
            return data
        if time.monotonic() > deadline:
            raise TimeoutError(f"recording {recording_id} is {data['status']}, not {wanted}")
        await asyncio.sleep(0.25)


async def record_agent_session(server: Server, tmp: Path) -> Recorded:
    api = Api(server)
    meeting_id = api.meeting(title="Support call")
    options = RoomOptions(
        room_id=meeting_id,
        name="Agent",
        auth_token=server.api_token,
        base_url=server.base_url,
        account_id=server.account_id,
        app_id=server.app_id,
    )
    speech = {text: espeak(text, tmp) for _, text in TURNS}
    ctx = JobContext(room_options=options)
    room = await ctx.connect()
    user_id, user_token = api.participant(meeting_id, "Caller")
    user = RoomClient(server.base_url, user_token)
    voice = AudioPushTrack()
    async with httpx.AsyncClient(base_url=api.base, headers=auth(server), timeout=30) as http:
        try:
            await user.join()
            await user.publish(audio=voice)
            # Recorded as a script would: composite VP8 WebM (small picture) plus a separate MP3.
            started = await http.post(
                "/recordings",
                json={
                    "meeting_id": meeting_id,
                    "audio_config": {"codec": "MP3", "channel": "stereo", "export_file": True},
                    "video_config": {"codec": "VP8", "width": 320, "height": 240},
                },
            )
            assert started.status_code == 201, started.text
            recording_id = started.json()["data"]["id"]
            await wait_status(http, recording_id, ("RECORDING",), 20)
            await asyncio.sleep(0.8)
            for role, text in TURNS:
                pcm = speech[text]
                seconds = len(pcm) / RATE
                if role == "agent":
                    start = room.push_audio(pcm)
                    await room.conversation_item_added("assistant", text, start=start, end=start + seconds)
                else:
                    start = room.now()
                    voice.push(pcm)
                    await room.user_input_transcribed(
                        text, True, "caller", "en", start=start, end=start + seconds, participant_id=user_id
                    )
                await asyncio.sleep(seconds + 0.7)
            stopped = await http.put(f"/recordings/{recording_id}", json={"action": "stop"})
            assert stopped.status_code == 200, stopped.text
        finally:
            await user.leave()
            await ctx.shutdown()
        done = await wait_status(http, recording_id, FINAL, 240)
        assert done["status"] == "UPLOADED", done
        transcript = await http.get(
            f"{server.base_url}/v1/recordings/{recording_id}/transcript", params={"format": "json"}
        )
    items = transcript.json()["items"]
    assert len(items) == len(TURNS), items
    return Recorded(recording_id, meeting_id, done["session_id"], room.participant_id, user_id, items)


@pytest.fixture(scope="module")
def hooks() -> Iterator[tuple[http.server.ThreadingHTTPServer, http.server.ThreadingHTTPServer]]:
    ok, down = hook_server(200), hook_server(503)
    yield ok, down
    for s in (ok, down):
        s.shutdown()
        s.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dashboard")
    # The webhook receivers are on loopback, which outbound calls refuse unless allowed.
    srv = start_server(
        tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}", {**SERVER_ENV, "ROOMTAPE_OUTBOUND_ALLOW_PRIVATE": "true"}
    )
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def recorded(
    server: Server,
    hooks: tuple[http.server.ThreadingHTTPServer, http.server.ThreadingHTTPServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Recorded:
    api = Api(server)
    for name, hook in zip(("status receiver", "flaky receiver"), hooks, strict=True):
        api._call(
            "POST",
            "/webhooks",
            json={
                "name": name,
                "url": f"http://127.0.0.1:{hook.server_address[1]}/hook",
                "events": ["recording.statusUpdate"],
            },
        )
    return run_sync(record_agent_session(server, tmp_path_factory.mktemp("speech")))  # type: ignore[no-any-return]


# --- browser helpers -------------------------------------------------------------------------------------------


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    # bypass_csp: Playwright's wait_for_function evaluates strings, which the pages' CSP (rightly) forbids.
    ctx = browser.new_context(viewport={"width": 1100, "height": 560}, accept_downloads=True, bypass_csp=True)
    yield ctx
    ctx.close()


def sign_in(page: Page, server: Server, path: str = "/dashboard/recordings") -> None:
    page.goto(server.base_url + path)
    assert "/dashboard/signin" in page.url
    page.get_by_label("API token").fill(server.api_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{path}")


def shoot(page: Page, artifacts: Path, name: str) -> None:
    page.screenshot(path=str(artifacts / f"dashboard-{name}.png"), full_page=True)


def no_horizontal_overflow(page: Page) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"page is {widths[0]} px wide in a {widths[1]} px viewport"


def wait_until(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def api_get(server: Server, path: str, **params: Any) -> httpx.Response:
    return httpx.get(server.base_url + path, params=params, headers=auth(server), timeout=30)


def kit(server: Server, rest: str) -> str:
    return f"/accounts/{server.account_id}/realtime/kit/{server.app_id}{rest}"


# --- tests -----------------------------------------------------------------------------------------------------


def test_signed_out_visitor_is_sent_to_sign_in(
    context: BrowserContext, server: Server, recorded: Recorded, artifacts: Path
) -> None:
    page = context.new_page()
    target = f"/dashboard/recordings/{recorded.recording_id}"
    page.goto(server.base_url + target)
    assert page.url.startswith(f"{server.base_url}/dashboard/signin")
    assert page.get_by_role("heading", name="Sign in to the dashboard").is_visible()
    # A wrong token is refused and the page says so.
    page.get_by_label("API token").fill("rt_not_a_real_token")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("That API token")
    shoot(page, artifacts, "signin")
    # The API proxy answers 401 without a session, and nothing is in the URL but the path.
    assert page.request.get(server.base_url + "/dashboard/api/kit/recordings").status == 401
    page.get_by_label("API token").fill(server.api_token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"**{target}")
    assert server.api_token not in page.url
    cookie = next(c for c in context.cookies() if c["name"] == "roomtape_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/dashboard"
    assert server.api_token not in cookie["value"]
    # The proxy reaches this app's API only: no path outside it, no write without the dashboard header.
    base = server.base_url + "/dashboard/api/"
    assert page.request.get(base + "kit/recordings").json()["paging"]["total_count"] >= 1
    assert page.request.get(base + "kit/%2e%2e/%2e%2e/x/realtime/kit/y/meetings").status == 404
    assert page.request.get(base + "v1/meetings/x/whip").status == 404
    assert page.request.delete(base + f"kit/recordings/{recorded.recording_id}").status == 403
    # Signing out forgets the session.
    page.get_by_role("button", name="Sign out").click()
    page.goto(server.base_url + "/dashboard/meetings")
    assert "/dashboard/signin" in page.url
    # The token never reached the server's log.
    assert server.api_token not in (server.data_dir / "server.log").read_text()


def test_lists_show_the_recording_with_filters(
    context: BrowserContext, server: Server, recorded: Recorded, artifacts: Path
) -> None:
    page = context.new_page()
    sign_in(page, server)
    row = page.locator(f'tr[data-id="{recorded.recording_id}"]')
    assert row.count() == 1
    text = row.inner_text()
    api = api_get(server, kit(server, f"/recordings/{recorded.recording_id}")).json()["data"]
    assert "UPLOADED" in text and "Support call" in text
    assert "Agent" in text and "Caller" in text
    minutes, seconds = divmod(api["recording_duration"], 60)
    assert f"{minutes}:{seconds:02d}" in text
    assert f"{api['file_size'] / 1000:.1f} kB" in text or f"{api['file_size'] / 1e6:.1f} MB" in text
    shoot(page, artifacts, "recordings")

    # Filters: status, meeting, search and time range go to the API and narrow the list.
    page.get_by_label("Status").select_option("ERRORED")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_url("**status=ERRORED**")
    assert page.locator(f'tr[data-id="{recorded.recording_id}"]').count() == 0
    page.goto(f"{server.base_url}/dashboard/recordings?status=UPLOADED&search=Support&meeting={recorded.meeting_id}")
    assert page.locator(f'tr[data-id="{recorded.recording_id}"]').count() == 1
    page.goto(f"{server.base_url}/dashboard/recordings?start=2001-01-01T00:00&end=2001-01-02T00:00")
    assert page.locator("tbody tr").inner_text().strip() == "No recordings match."

    page.goto(server.base_url + "/dashboard/meetings")
    meeting = page.locator(f'tr[data-id="{recorded.meeting_id}"]')
    assert "Support call" in meeting.inner_text() and "ACTIVE" in meeting.inner_text()
    assert meeting.locator("td").nth(2).inner_text() == "2"  # the agent and the caller
    assert meeting.locator("td").nth(3).inner_text() not in ("—", "0:00")  # how long the session lasted
    shoot(page, artifacts, "meetings")
    page.goto(f"{server.base_url}/dashboard/sessions?meeting={recorded.meeting_id}")
    session = page.locator(f'tr[data-id="{recorded.session_id}"]')
    assert "ENDED" in session.inner_text() and "2 at most" in session.inner_text()
    shoot(page, artifacts, "sessions")


def test_webhooks_page_shows_hooks_and_every_attempt(
    context: BrowserContext,
    server: Server,
    recorded: Recorded,
    hooks: tuple[http.server.ThreadingHTTPServer, http.server.ThreadingHTTPServer],
    artifacts: Path,
) -> None:
    page = context.new_page()
    sign_in(page, server, "/dashboard/webhooks")
    registered = page.get_by_role("table", name="Registered webhooks").inner_text()
    assert "status receiver" in registered and "flaky receiver" in registered
    log = page.get_by_role("table", name="Deliveries")

    def attempts() -> str:
        page.reload()
        return str(log.inner_text())

    # Deliveries run in the background: wait for a delivered one and a failed retry to be logged.
    wait_until(lambda: "HTTP 200" in (t := attempts()) and "HTTP 503" in t, 60, "delivery attempts")
    assert "recording.statusUpdate" in log.inner_text()
    assert "receiver is down for maintenance" in page.content()
    # Each row shows every attempt the API reports for that event and URL.
    api = api_get(server, kit(server, "/webhooks/deliveries"), per_page=50).json()["data"]
    flaky = next(d for d in api if d["url"].endswith(f":{hooks[1].server_address[1]}/hook") and d["attempts"])
    row = page.locator(f'tr[data-event="{flaky["event_id"]}"]').filter(has_text=flaky["url"])
    assert row.locator("ol.attempts > li").count() >= len(flaky["attempts"]) >= 1
    shoot(page, artifacts, "webhooks")


def test_recording_plays_with_autoscrolling_transcript(
    context: BrowserContext, server: Server, recorded: Recorded, artifacts: Path
) -> None:
    page = context.new_page()
    sign_in(page, server, f"/dashboard/recordings/{recorded.recording_id}")
    items = page.locator("#transcript-items li")
    items.nth(4).wait_for()
    assert items.count() == 5
    starts = [float(i["start"]) for i in recorded.items]
    ends = [float(i["end"]) for i in recorded.items]
    # The page shows the same items, in order, with millisecond times on hover.
    for n, item in enumerate(recorded.items):
        assert items.nth(n).get_attribute("data-start") == str(item["start"])
        title = items.nth(n).locator(".t").get_attribute("title") or ""
        ms = round(starts[n] * 1000)
        assert title.startswith(f"{ms // 60000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"), title
    assert "Agent" in items.nth(0).inner_text() and "Caller" in items.nth(1).inner_text()

    player = page.locator("#player")
    assert player.evaluate("el => el.tagName") == "VIDEO"
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=20_000)
    duration = float(player.evaluate("el => el.duration"))
    assert abs(duration - (ends[-1] + 0.7)) < 3.0, duration

    # The transcript list is shorter than its items: scroll the third out of view first.
    in_view = """n => { const list = document.getElementById('transcript-items');
        const b = list.getBoundingClientRect(), r = list.children[n].getBoundingClientRect();
        return r.top >= b.top - 1 && r.bottom <= b.bottom + 1 && r.bottom <= window.innerHeight; }"""
    page.evaluate("document.getElementById('transcript-items').scrollTop = 1e6")
    page.evaluate("window.scrollTo(0, 0)")
    if page.evaluate(in_view, 2):
        page.evaluate("document.getElementById('transcript-items').scrollTop = 0")
    assert page.evaluate(
        "(() => { const l = document.getElementById('transcript-items'); return l.scrollHeight > l.clientHeight })()"
    )

    # Play, then seek inside the third item: it is highlighted and scrolled into view.
    page.evaluate("document.getElementById('player').play()")
    page.wait_for_function("document.getElementById('player').currentTime > 0.2", timeout=15_000)
    inside_third = (starts[2] + ends[2]) / 2
    page.evaluate(f"document.getElementById('player').currentTime = {inside_third}")
    page.wait_for_function("document.querySelectorAll('#transcript-items li.current').length === 1", timeout=10_000)
    assert items.nth(2).get_attribute("class") == "current"
    assert items.nth(2).locator("button").get_attribute("aria-current") == "true"
    page.wait_for_function(in_view, arg=2, timeout=10_000)
    shoot(page, artifacts, "recording-third-item")

    # Playing on from just before the fourth item highlights it when its start is reached.
    page.evaluate(f"document.getElementById('player').currentTime = {max(ends[2], starts[3] - 0.4)}")
    page.wait_for_function(
        "document.querySelector('#transcript-items li.current')"
        " === document.querySelectorAll('#transcript-items li')[3]",
        timeout=15_000,
    )
    page.wait_for_function(in_view, arg=3, timeout=10_000)

    # Clicking the fifth item seeks the player to its start.
    page.evaluate("document.getElementById('player').pause()")
    items.nth(4).locator("button").click()
    page.wait_for_function("!document.getElementById('player').seeking", timeout=10_000)
    current = float(player.evaluate("el => el.currentTime"))
    assert abs(current - starts[4]) <= 0.05, (current, starts[4])
    assert items.nth(4).get_attribute("class") == "current"
    assert page.locator("#position").inner_text().startswith(f"{round(starts[4] * 1000) // 60000:02d}:")

    # The timeline has a row per participant with track segments and the spans each spoke.
    timeline = page.locator("#timeline")
    assert timeline.locator(f'.lane-row[data-participant="{recorded.agent_id}"] .seg').count() >= 1
    assert timeline.locator(f'.lane-row[data-participant="{recorded.user_id}"] .seg').count() >= 1
    assert timeline.locator(f'.lane-row[data-participant="{recorded.agent_id}"] .speech').count() == 3
    assert timeline.locator(f'.lane-row[data-participant="{recorded.user_id}"] .speech').count() == 2
    shoot(page, artifacts, "recording")


def stored_path(server: Server, href: str) -> Path:
    """The file in the server's local storage that a roomtape-signed download URL names."""
    path = unquote(urlsplit(href).path)
    assert path.startswith("/downloads/default/"), href
    return server.data_dir / "storage" / path.removeprefix("/downloads/default/")


def test_downloads_return_the_stored_bytes(
    context: BrowserContext, server: Server, recorded: Recorded, artifacts: Path
) -> None:
    page = context.new_page()
    sign_in(page, server, f"/dashboard/recordings/{recorded.recording_id}")
    links = page.locator(".downloads a")
    labels = [links.nth(i).inner_text() for i in range(links.count())]
    assert labels[:2] == ["Composite", "Audio file"], labels
    assert {"Transcript (JSON)", "Transcript (WebVTT)", "Transcript (SRT)"} <= set(labels)
    data = api_get(server, kit(server, f"/recordings/{recorded.recording_id}")).json()["data"]
    # Two participants, one audio track each (one segment), each with its manifest.
    assert sum(1 for label in labels if label.startswith("Track audio")) == 2, labels
    assert sum(1 for label in labels if label.startswith("Timing manifest audio")) == 2, labels

    # The composite, saved by a real download in the browser.
    with page.expect_download() as info:
        links.nth(0).click()
    download = info.value
    composite = Path(download.path())
    assert download.suggested_filename == data["output_file_name"]
    assert composite.read_bytes() == stored_path(server, data["download_url"]).read_bytes()
    with av.open(str(composite)) as container:
        kinds = {s.type for s in container.streams}
        assert kinds == {"video", "audio"}, kinds
        assert float(container.duration or 0) / 1e6 > recorded.items[-1]["end"]

    participants = {recorded.agent_id, recorded.user_id}
    seen_manifests: set[str] = set()
    for i in range(links.count()):
        link = links.nth(i)
        label, href, name = link.inner_text(), link.get_attribute("href") or "", link.get_attribute("download") or ""
        body = page.request.get(href).body()
        if label.startswith("Transcript"):
            fmt = href.split("format=")[1].split("&")[0]
            expected = api_get(server, f"/v1/recordings/{recorded.recording_id}/transcript", format=fmt).content
        else:
            stored = stored_path(server, href)
            expected = stored.read_bytes()
            if label.startswith("Timing manifest"):
                manifest = json.loads(body)
                assert manifest["participant_id"] in participants and manifest["kind"] == "audio"
                assert manifest["session_id"] == recorded.session_id
                seen_manifests.add(manifest["participant_id"])
            elif label.startswith("Track"):
                assert stored.name == name and stored.parent.parent.name in participants
                with av.open(str(stored)) as track:
                    assert track.streams.audio[0].codec_context.name == "opus"
            elif label == "Audio file":
                with av.open(str(stored)) as audio:
                    assert audio.streams.audio[0].codec_context.name.startswith("mp3")
                    assert float(audio.duration or 0) / 1e6 > recorded.items[-1]["end"]
        assert hashlib.sha256(body).hexdigest() == hashlib.sha256(expected).hexdigest(), label
    assert seen_manifests == participants


def test_keyboard_landmarks_and_narrow_screens(
    browser: Browser, server: Server, recorded: Recorded, artifacts: Path
) -> None:
    ctx = browser.new_context(viewport={"width": 1100, "height": 800}, bypass_csp=True)
    page = ctx.new_page()
    sign_in(page, server, f"/dashboard/recordings/{recorded.recording_id}")
    page.locator("#transcript-items li").nth(4).wait_for()
    # Landmarks, and every form control has a label.
    assert page.get_by_role("banner").count() == 1
    assert page.get_by_role("navigation", name="Dashboard").count() == 1
    assert page.get_by_role("main").count() == 1
    unlabeled = page.evaluate(
        """[...document.querySelectorAll('input:not([type=hidden]), select, video, audio, button')]
           .filter(el => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.textContent.trim())
           .map(el => el.outerHTML)"""
    )
    assert unlabeled == []
    # Tab order: skip link, navigation, sign-out, actions, re-render form, player, transcript, downloads.
    order: list[str] = []
    for _ in range(40):
        page.keyboard.press("Tab")
        order.append(
            page.evaluate(
                """(() => { const el = document.activeElement;
                    const name = el.id || el.getAttribute('aria-label') || el.textContent || el.tagName;
                    return name.trim().slice(0, 40); })()"""
            )
        )
    key = ["Skip to content", "Recordings", "Webhooks", "Sign out", "Delete", "rr-layout", "Render", "player"]
    positions = [order.index(k) for k in key]
    assert positions == sorted(positions), order
    # Then the transcript items, after the player.
    first_item = next(i for i, label in enumerate(order) if label.startswith("Play from"))
    assert first_item > positions[-1]
    # The focused control shows a visible focus ring.
    page.locator("#transcript-items li button").first.focus()
    page.keyboard.press("Tab")
    page.keyboard.press("Shift+Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    # Enter on a focused transcript item seeks, as a click does.
    page.keyboard.press("Enter")
    page.wait_for_function("!document.getElementById('player').seeking", timeout=10_000)
    assert (
        abs(float(page.evaluate("document.getElementById('player').currentTime")) - recorded.items[0]["start"]) <= 0.05
    )
    ctx.close()

    narrow = browser.new_context(
        viewport={"width": 375, "height": 740}, is_mobile=True, has_touch=True, bypass_csp=True
    )
    page = narrow.new_page()
    sign_in(page, server)
    for name, path in (
        ("recordings", "/dashboard/recordings"),
        ("meetings", "/dashboard/meetings"),
        ("sessions", "/dashboard/sessions"),
        ("webhooks", "/dashboard/webhooks"),
        ("recording", f"/dashboard/recordings/{recorded.recording_id}"),
    ):
        page.goto(server.base_url + path)
        if name == "recording":
            page.locator("#transcript-items li").nth(4).wait_for()
        no_horizontal_overflow(page)
        shoot(page, artifacts, f"{name}-375px")
    narrow.close()


# --- actions on a live meeting, retry, render again, delete ----------------------------------------------------


class LiveCaller:
    """A caller in a meeting, publishing a tone, on an event loop of its own thread."""

    def __init__(self, server: Server, token: str) -> None:
        self.server, self.token = server, token
        self.loop = asyncio.new_event_loop()
        self.joined = threading.Event()
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        client = RoomClient(self.server.base_url, self.token)
        try:
            await client.join()
            await client.publish(audio=ToneAudioTrack(440))
            self.joined.set()
            await self._stop.wait()
        except BaseException as exc:
            self.error = exc
            self.joined.set()
        finally:
            await client.leave()

    def __enter__(self) -> LiveCaller:
        self.thread.start()
        assert self.joined.wait(30) and self.error is None, self.error
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._stop is not None
        self.loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


def test_actions_go_through_the_api(
    context: BrowserContext, server: Server, recorded: Recorded, artifacts: Path
) -> None:
    api = Api(server)
    meeting_id = api.meeting(title="Live room")
    _, token = api.participant(meeting_id, "Dana")
    page = context.new_page()
    sign_in(page, server, "/dashboard/meetings")

    def api_status(recording_id: str) -> str:
        return str(api_get(server, kit(server, f"/recordings/{recording_id}")).json()["data"]["status"])

    with LiveCaller(server, token):
        wait_until(lambda: bool(api.sessions(meeting_id)), 20, "the live session")
        page.reload()
        row = page.locator(f'tr[data-id="{meeting_id}"]')
        assert "LIVE" in row.inner_text()
        row.get_by_role("button", name="Start recording").click()
        page.wait_for_url("**/dashboard/recordings/*")
        recording_id = page.url.rsplit("/", 1)[-1]
        status = page.locator("#recording-status [data-field=status]")
        # The page polls the API: the status turns RECORDING at the first frame written.
        wait_until(lambda: status.inner_text() == "RECORDING", 30, "RECORDING on the page")
        shoot(page, artifacts, "recording-live")
        # The list, opened now and never reloaded, follows the status by itself.
        listing = context.new_page()
        listing.goto(f"{server.base_url}/dashboard/recordings?meeting={meeting_id}")
        listed = listing.locator(f'tr[data-id="{recording_id}"] [data-field=status]')
        assert listed.inner_text() == "RECORDING"
        # A running recording cannot be deleted (the page hides the button; the API says 409).
        assert page.get_by_role("button", name="Delete").is_hidden()
        refused = page.request.delete(
            f"{server.base_url}/dashboard/api/kit/recordings/{recording_id}", headers={"X-Roomtape-Dashboard": "1"}
        )
        assert refused.status == 409, refused.text()
        page.get_by_role("button", name="Pause").click()
        wait_until(lambda: status.inner_text() == "PAUSED", 15, "PAUSED on the page")
        wait_until(lambda: listed.inner_text() == "PAUSED", 15, "PAUSED in the list")
        assert api_status(recording_id) == "PAUSED"
        time.sleep(1.0)
        page.get_by_role("button", name="Resume").click()
        wait_until(lambda: status.inner_text() == "RECORDING", 15, "RECORDING again")
        assert api_status(recording_id) == "RECORDING"
        time.sleep(2.0)
        page.get_by_role("button", name="Stop").click()
        wait_until(lambda: api_status(recording_id) in ("UPLOADING", *FINAL), 15, "stopped")
    # Rendered and uploaded in the background; the page reloads itself when the status is final.
    wait_until(lambda: api_status(recording_id) in FINAL, 240, "upload")
    assert api_status(recording_id) == "UPLOADED"
    page.wait_for_function("document.getElementById('player') !== null", timeout=30_000)
    wait_until(lambda: listed.inner_text() == "UPLOADED", 15, "UPLOADED in the list")
    assert listing.locator(f'tr[data-id="{recording_id}"] [data-field=file_size]').inner_text() != "—"
    listing.close()

    # A failed upload is retried from the page (the failure is written into the row here).
    async def fail(rid: str) -> None:
        from roomtape.db.engine import create_engine, session_factory
        from roomtape.db.models import Recording

        engine = create_engine(server.database_url)
        try:
            async with session_factory(engine)() as db:
                rec = await db.get(Recording, rid)
                assert rec is not None
                rec.status, rec.error = "ERRORED", "storage refused the upload (simulated)"
                await db.commit()
        finally:
            await engine.dispose()

    run_sync(fail(recording_id))
    page.reload()
    assert "storage refused the upload" in page.get_by_role("alert").inner_text()
    shoot(page, artifacts, "recording-errored")
    page.get_by_role("button", name="Retry upload").click()
    wait_until(lambda: api_status(recording_id) == "UPLOADED", 60, "retried upload")

    # Render again as audio-only OGG: the API answers once rendered, the page then plays <audio>.
    page.reload()
    page.get_by_label("Layout").select_option("audio_only")
    page.get_by_label("Format").select_option("ogg")
    page.get_by_role("button", name="Render").click()
    wait_until(
        lambda: api_status(recording_id) == "UPLOADED" and page.locator("audio#player").count() == 1, 240, "re-render"
    )
    data = api_get(server, kit(server, f"/recordings/{recording_id}")).json()["data"]
    assert data["output_file_name"].endswith(".ogg")
    href = page.locator(".downloads a", has_text="Composite").get_attribute("href") or ""
    ogg = page.request.get(href).body()
    assert ogg[:4] == b"OggS"

    # Delete: confirmed in a dialog, then the recording and its files are gone.
    hrefs = [a.get_attribute("href") or "" for a in page.locator(".downloads a").all()]
    stored_before = [stored_path(server, h) for h in hrefs if "/downloads/" in h]
    assert len(stored_before) >= 3 and all(p.is_file() for p in stored_before)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/dashboard/recordings")
    assert api_get(server, kit(server, f"/recordings/{recording_id}")).status_code == 404
    assert not [p for p in stored_before if p.exists()]
    assert page.locator(f'tr[data-id="{recording_id}"]').count() == 0
