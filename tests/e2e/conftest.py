"""Debian's Chromium driven by Playwright, with fake camera and microphone, talking to loopback only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"

CHROMIUM_ARGS = [
    "--use-fake-ui-for-media-stream",  # grant camera/mic without a prompt
    "--use-fake-device-for-media-stream",  # a synthetic camera (moving pattern) and microphone (beeps)
    "--autoplay-policy=no-user-gesture-required",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # This machine has no network but loopback: keep Chromium from trying its background services.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # plain 127.0.0.1 host candidates, no mDNS names
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope: Playwright's sync API keeps an event loop running while it is open, which would break
    # fixtures elsewhere that call asyncio.run().
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
