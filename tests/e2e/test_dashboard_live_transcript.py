"""The dashboard's session page follows a LIVE session's transcript in Debian's Chromium, without a reload.

A Python client (``RoomClient``) keeps a meeting's session LIVE; the session page is open; transcript items
then arrive through the REST ingest (a live speech-to-text run is covered by
``tests/integration/transcripts/test_live_transcription.py``) and appear on the page within a few polls, with
the speaker's name and time, markup shown as text, in speaking order. The list follows the newest item unless
the reader has scrolled up. The live transcription's progress (segments done / failed, as the server computes
it from its segment rows) is shown. Once the client leaves, the session ends and the page stops polling.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, async_playwright
from tests.conftest import Server
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.signaling.signaling_helpers import Api, run_signaling_server, wait_for

from roomtape.agents import RoomClient
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.models import TranscriptSegment

pytestmark = pytest.mark.timeout(180)

HTML = '<b>html</b> & <img src=x onerror="window.pwned=1">'
WITHIN_MS = 10_000
"""How long an item may take to show (the page polls every 2 s; two shared cores)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("dashboard-live"))


async def ingest(server: Server, session_id: str, events: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {server.api_token}"}, timeout=10) as http:
        r = await http.post(f"{server.base_url}/v1/sessions/{session_id}/transcript", json=events)
    assert r.status_code == 201, r.text


def said(text: str, start: float, participant_id: str | None = None, item_id: str | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {"type": "conversation_item_added", "role": "user", "text": text, "start": start}
    event["end"] = start + 1.0
    if participant_id:
        event["participant_id"] = participant_id
    if item_id:
        event["item"] = {"id": item_id, "role": "user", "content": [text]}
        del event["text"]
    return event


async def texts(page: Page) -> list[str]:
    return list(await page.locator("#session-transcript li .text").all_text_contents())


async def add_segments(server: Server, session_id: str, participant_id: str, statuses: list[str]) -> None:
    """Segment rows as the live spool and its jobs leave them (what the progress is computed from)."""
    engine = create_engine(server.database_url)
    now_ms = int(time.time() * 1000)
    try:
        async with session_factory(engine)() as db:
            for index, status in enumerate(statuses, start=1):
                db.add(
                    TranscriptSegment(
                        id=f"{session_id[:20]}-{index}",
                        app_id=server.app_id,
                        session_id=session_id,
                        participant_id=participant_id,
                        index=index,
                        path=f"spool/{index}.ogg",
                        status=status,
                        start_epoch_ms=now_ms + index * 1000,
                        end_epoch_ms=now_ms + index * 1000 + 900,
                        backend="pocketsphinx",
                        error="STT backend answered 502" if status == "failed" else None,
                    )
                )
            await db.commit()
    finally:
        await engine.dispose()


async def test_live_session_page_appends_items_without_reload(server: Server, artifacts: Path) -> None:
    api = Api(server)
    meeting = api.meeting(title="live transcript")
    ada_id, ada_token = api.participant(meeting, "Ada")
    client = RoomClient(server.base_url, ada_token)
    await client.join()
    left = False
    try:
        assert client.session_id is not None
        sid = client.session_id
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                # bypass_csp: wait_for_function evaluates strings, which the page's CSP (rightly) forbids.
                context = await browser.new_context(viewport={"width": 1000, "height": 700}, bypass_csp=True)
                page = await context.new_page()
                await page.goto(f"{server.base_url}/dashboard/sessions/{sid}")
                await page.get_by_label("API token").fill(server.api_token)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(f"**/dashboard/sessions/{sid}")
                await page.locator("#session-transcript li.empty").wait_for(timeout=WITHIN_MS)
                assert await page.locator("#session-transcript").get_attribute("data-live") == "true"
                assert await page.locator("#transcription-progress").is_hidden()
                await page.evaluate("window.sameDocument = true")  # gone if the page reloads

                # An item ingested after the page opened shows up, with the speaker's name and its time.
                await ingest(server, sid, [said("hello everyone", 61.2, ada_id)])
                await page.wait_for_function(
                    "document.querySelectorAll('#session-transcript li[data-item]').length === 1", timeout=WITHIN_MS
                )
                first = page.locator("#session-transcript li[data-item]").first
                assert await first.locator(".who").inner_text() == "Ada"
                assert await first.locator(".t").inner_text() == "1:01"
                assert await first.locator(".t").get_attribute("title") == "01:01.200 \u2013 01:02.200"
                assert await texts(page) == ["hello everyone"]

                # Markup in an item is text: shown literally, nothing parsed or run.
                await ingest(server, sid, [said(HTML, 63.0, ada_id)])
                await page.wait_for_function(
                    "document.querySelectorAll('#session-transcript li[data-item]').length === 2", timeout=WITHIN_MS
                )
                assert await texts(page) == ["hello everyone", HTML]
                assert await page.locator("#session-transcript b, #session-transcript img").count() == 0
                assert await page.evaluate("window.pwned === undefined")

                # Many items: the list overflows and follows the newest one.
                await ingest(server, sid, [said(f"line {n}", 70.0 + n) for n in range(30)])
                await page.wait_for_function(
                    "document.querySelectorAll('#session-transcript li[data-item]').length === 32", timeout=WITHIN_MS
                )
                at_bottom = """() => { const l = document.getElementById('session-transcript');
                    return l.scrollHeight > l.clientHeight && l.scrollHeight - l.scrollTop - l.clientHeight < 8 }"""
                assert await page.evaluate(at_bottom), "the list did not follow the newest item"
                assert (await texts(page))[-1] == "line 29"
                assert await page.locator("#session-transcript li[data-item] .who").last.inner_text() == "User"

                # Scrolled up by the reader: a new item is added but the list stays where the reader is.
                await page.evaluate("document.getElementById('session-transcript').scrollTop = 0")
                await ingest(server, sid, [said("while you read", 120.0)])
                await page.wait_for_function(
                    "document.querySelectorAll('#session-transcript li[data-item]').length === 33", timeout=WITHIN_MS
                )
                assert await page.evaluate("document.getElementById('session-transcript').scrollTop") == 0

                # A late item that was spoken earlier lands in speaking order, not at the end.
                await ingest(server, sid, [said("said in between", 62.0, ada_id)])
                await page.wait_for_function(
                    "document.querySelectorAll('#session-transcript li[data-item]').length === 34", timeout=WITHIN_MS
                )
                assert (await texts(page))[:3] == ["hello everyone", "said in between", HTML]

                # The endpoint answers only a signed-in dashboard, and only for its app's sessions.
                async with httpx.AsyncClient(timeout=10) as http:
                    signed_out = await http.get(f"{server.base_url}/dashboard/sessions/{sid}/transcript.json")
                assert signed_out.status_code == 401
                other = await page.request.get(f"{server.base_url}/dashboard/sessions/not-{sid}/transcript.json")
                assert other.status == 404 and (await other.json())["error"]["message"] == "session not found"

                # The live transcription's progress: two segments done, one failed.
                await add_segments(server, sid, ada_id, ["done", "failed", "done"])
                progress = page.locator("#transcription-progress")
                await progress.wait_for(state="visible", timeout=WITHIN_MS)
                assert await progress.inner_text() == (
                    "Transcription (live): failed — 2 of 3 segments done, 1 failed: STT backend answered 502"
                )
                await page.screenshot(path=str(artifacts / "dashboard-session-live-transcript.png"), full_page=True)

                # The session ends: the page stops polling (and says so on the list).
                await client.leave()
                left = True
                await wait_for(lambda: api.sessions(meeting)[0]["status"] == "ENDED", within=30, what="ENDED")
                await page.wait_for_function(
                    "document.getElementById('session-transcript').dataset.live === 'false'", timeout=WITHIN_MS
                )
                requests: list[str] = []
                page.on("request", lambda r: requests.append(r.url) if "transcript.json" in r.url else None)
                await asyncio.sleep(5)
                assert requests == [], "the page kept polling after the session ended"
                assert len(await texts(page)) == 34
                assert await page.evaluate("window.sameDocument === true"), "the page was reloaded"
            finally:
                await browser.close()
    finally:
        if not left:
            await client.leave()
