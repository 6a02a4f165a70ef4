"""Chat between Chromium (the join page, fake devices, driven by Playwright) and a Python client, with
``persist_chat``: both directions, history on join, a refused oversized message, and markup that stays text
on the join page and on the dashboard's session page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.async_api import Page, async_playwright
from tests.conftest import Server
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.signaling.signaling_helpers import Api, run_signaling_server, wait_for

from roomtape.agents import RoomClient
from roomtape.media.chat import MAX_CHAT_CHARS

pytestmark = pytest.mark.timeout(120)

HTML = '<img src=x onerror="window.pwned=1"><b id="injected">bold</b> & more'


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("chat-browser"))


async def chat_texts(page: Page) -> list[str]:
    return list(await page.locator("#chat-log li .text").all_text_contents())


async def test_browser_and_python_chat(server: Server, artifacts: Path) -> None:
    api = Api(server)
    meeting = api.meeting(title="chat", persist_chat=True)
    _, py_token = api.participant(meeting, "python")
    _, browser_token = api.participant(meeting, "chromium")

    client = RoomClient(server.base_url, py_token)
    await client.join()
    before = await client.send_chat("sent before the browser joined")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(f"{server.base_url}/join/{meeting}?token={browser_token}")
            await page.get_by_role("button", name="Join with camera and microphone").click()
            await page.wait_for_function("window.roomtape && window.roomtape.ready === true", timeout=15_000)

            # History on join: the message sent before the browser came.
            assert await chat_texts(page) == [before.text]

            # Browser → Python, typed into the page's form.
            await page.get_by_label("Message", exact=True).fill("hello from chromium")
            await page.get_by_role("button", name="Send").click()
            await wait_for(lambda: len(client.chat) == 2, within=10, what="the browser's message in Python")
            assert client.chat[-1].text == "hello from chromium" and client.chat[-1].name == "chromium"

            # Python → browser, with markup that must stay text.
            await client.send_chat(HTML)
            await page.wait_for_function("document.querySelectorAll('#chat-log li').length === 3", timeout=10_000)
            assert await chat_texts(page) == [before.text, "hello from chromium", HTML]
            assert await page.locator("#chat-log img, #injected").count() == 0
            assert await page.evaluate("window.pwned === undefined")

            # An oversized message from the page is refused with the server's reason; nothing arrives.
            refused = await page.evaluate(
                "(n) => window.roomtape.client.sendChat('z'.repeat(n)).then(() => 'sent', (e) => e.message)",
                MAX_CHAT_CHARS + 1,
            )
            assert f"at most {MAX_CHAT_CHARS}" in refused
            await client.send_chat("after the refusal")
            await page.wait_for_function("document.querySelectorAll('#chat-log li').length === 4", timeout=10_000)
            assert [m.text for m in client.chat] == [before.text, "hello from chromium", HTML, "after the refusal"]
            await page.screenshot(path=str(artifacts / "join-page-chat.png"))

            # The dashboard's session page shows the stored chat, markup as text.
            assert client.session_id is not None
            dash = await (await browser.new_context()).new_page()
            await dash.goto(f"{server.base_url}/dashboard/sessions/{client.session_id}")
            await dash.get_by_label("API token").fill(server.api_token)
            await dash.get_by_role("button", name="Sign in").click()
            await dash.wait_for_url(f"**/dashboard/sessions/{client.session_id}")
            texts = await dash.locator("ol.chat li .text").all_text_contents()
            assert texts == [before.text, "hello from chromium", HTML, "after the refusal"]
            assert await dash.locator("ol.chat img, #injected").count() == 0
            names = await dash.locator("ol.chat li strong").all_text_contents()
            assert names == ["python", "chromium", "python", "python"]
            await dash.screenshot(path=str(artifacts / "dashboard-session-chat.png"), full_page=True)
            # On a phone (375 px) the page, long ids and markup-looking text included, does not scroll sideways.
            await dash.set_viewport_size({"width": 375, "height": 740})
            overflow = await dash.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{overflow}px of horizontal scrolling at 375px"
            await dash.screenshot(path=str(artifacts / "dashboard-session-chat-375px.png"), full_page=True)
        finally:
            await browser.close()
            await client.leave()
    await asyncio.sleep(0)
