"""A newcomer's path in Debian's Chromium, against ``roomtape serve`` started as ``make run`` starts it.

The server runs as a subprocess with the demo app (no ``--no-demo``, no ``apps create``), on a free port and
a temporary data directory: what it prints is what a newcomer sees.
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

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page
from tests.conftest import BIN, free_port

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
