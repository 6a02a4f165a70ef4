"""A real RTMP server for tests: Debian's nginx with ``libnginx-mod-rtmp``, unprivileged, on a free loopback port.

Its config, pid file and logs live in a temporary directory; it runs in the foreground (``daemon off``, one
process), so the test can kill it (a receiver dying mid-stream) and start it again on the same port.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.conftest import free_port

NGINX = "/usr/sbin/nginx"
RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

_CONFIG = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 64; }}
rtmp {{
  server {{
    listen 127.0.0.1:{port};
    chunk_size 4096;
    application live {{
      live on;
      record off;
      wait_key on;
      wait_video on;
    }}
  }}
}}
"""


@dataclass
class RtmpServer:
    """nginx-rtmp on ``127.0.0.1:port`` with one application, ``live``."""

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, key: str) -> str:
        """The publish/play URL of stream ``key``."""
        return f"rtmp://127.0.0.1:{self.port}/live/{key}"

    def start(self) -> None:
        """Start nginx and wait until it accepts connections."""
        self.directory.mkdir(parents=True, exist_ok=True)
        config = self.directory / "nginx.conf"
        config.write_text(_CONFIG.format(module=RTMP_MODULE, dir=self.directory, port=self.port))
        log = open(self.directory / "stdout.log", "ab")
        # -e: the error log before the config is read (the default is under /var/log, not ours).
        self.process = subprocess.Popen(
            [NGINX, "-c", str(config), "-p", str(self.directory), "-e", str(self.directory / "error.log")],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {(self.directory / 'error.log').read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return
            if time.monotonic() > deadline:
                raise RuntimeError("nginx did not listen in time")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL: the receiver dies without closing its connections."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self.process = None
