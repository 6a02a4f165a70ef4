"""A newcomer's path in Debian's Chromium, against ``roomtape serve`` started as ``make run`` starts it.

The server runs as a subprocess with the demo app (no ``--no-demo``, no ``apps create``), on a free port and
a temporary data directory: what it prints is what a newcomer sees.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext
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

    @property
    def log(self) -> str:
        return (self.data_dir / "server.log").read_text()


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
    return DemoServer(base, data_dir, proc, env, creds["account_id"], creds["app_id"], creds["api_token"])


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
