"""``roomtape serve --media-workers N``: N media processes on this host, one event loop (core) each.

The parent is their api node. Each child is ``roomtape serve --role media`` on port ``PORT+i`` with the
parent's environment (database, secret key, data directory, registry), so it registers itself in the
registry like any media node on another host would. Children end with the parent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from roomtape.children import die_with_parent

if TYPE_CHECKING:
    from roomtape.config import Settings

__all__ = ["MediaWorkers"]


class MediaWorkers:
    """Spawns the media processes on enter and stops them on exit (SIGTERM, then SIGKILL after 10 s).

    Args:
        settings: The parent's settings (host, port, the rest through the environment).
        count: How many media processes (0: none).
    """

    def __init__(self, settings: Settings, count: int) -> None:
        self._settings = settings
        self._count = count
        self._procs: list[subprocess.Popen[bytes]] = []
        self.urls: list[str] = []
        """Base URLs of the media processes."""

    def __enter__(self) -> MediaWorkers:
        """Start them."""
        exe = Path(sys.executable).parent / "roomtape"
        cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "roomtape.cli"]
        for i in range(1, self._count + 1):
            port = self._settings.port + i
            url = f"http://{self._settings.host}:{port}"
            env = {
                **os.environ,
                "ROOMTAPE_ROLE": "media",
                "ROOMTAPE_MEDIA_WORKERS": "0",
                "ROOMTAPE_HOST": self._settings.host,
                "ROOMTAPE_PORT": str(port),
                "ROOMTAPE_NODE_URL": url,
                "ROOMTAPE_DATA_DIR": str(self._settings.data_dir),
                "ROOMTAPE_DATABASE_URL": self._settings.resolved_database_url,
                "ROOMTAPE_PUBLIC_URL": self._settings.resolved_public_url,
                "ROOMTAPE_SECRET_KEY": self._settings.resolved_secret_key(),
            }
            self._procs.append(subprocess.Popen([*cmd, "serve", "--no-demo"], env=env, preexec_fn=die_with_parent))
            self.urls.append(url)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop them."""
        for proc in self._procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self._procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
