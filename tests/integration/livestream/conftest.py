"""Fixtures of the livestream tests: a real RTMP server (Debian's nginx with libnginx-mod-rtmp)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.livestream.rtmp_server import RtmpServer


@pytest.fixture
def rtmp(tmp_path: Path) -> Iterator[RtmpServer]:
    """nginx-rtmp on a free loopback port, stopped after the test."""
    server = RtmpServer(tmp_path / "nginx")
    server.start()
    try:
        yield server
    finally:
        server.stop()
