"""``roomtape serve --media-workers N``: an api node and N media processes from one command; roles need Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import redis
from tests.conftest import BIN, free_port, wait_healthy
from tests.integration.cluster.deployment import REDIS_URL


def test_a_role_without_the_registry_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "ROOMTAPE_DATA_DIR": str(tmp_path), "ROOMTAPE_CLUSTER_URL": ""}
    for args in (["--role", "media"], ["--role", "api"], ["--media-workers", "2"]):
        out = subprocess.run(
            [str(BIN / "roomtape"), "serve", "--no-demo", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert out.returncode != 0, args
        assert "ROOMTAPE_CLUSTER_URL" in out.stderr, out.stderr


def test_media_workers_spawns_registered_media_processes(tmp_path: Path, pg_database_url: str) -> None:
    prefix = f"roomtape-test:{uuid.uuid4().hex[:10]}"
    port = free_port()  # the children take port+1 and port+2
    env = {
        **os.environ,
        "ROOMTAPE_DATA_DIR": str(tmp_path),
        "ROOMTAPE_DATABASE_URL": pg_database_url,
        "ROOMTAPE_PORT": str(port),
        "ROOMTAPE_CLUSTER_URL": REDIS_URL,
        "ROOMTAPE_CLUSTER_PREFIX": prefix,
    }
    log = tmp_path / "serve.log"
    proc = subprocess.Popen(
        [str(BIN / "roomtape"), "serve", "--no-demo", "--media-workers", "2"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        deadline = time.monotonic() + 120  # the children start after the parent, on busy shared cores
        for child in (port + 1, port + 2):
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{child}/healthz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, f"media process on {child} did not start:\n{log.read_text()}"
                    time.sleep(0.2)
        roles: dict[str, str] = {}
        while len(roles) < 3 and time.monotonic() < deadline:
            roles = {
                str(r.hget(f"{prefix}:node:{n}", "url")): str(r.hget(f"{prefix}:node:{n}", "role"))
                for n in r.zrange(f"{prefix}:nodes", 0, -1)
            }
            time.sleep(0.2)
        assert roles == {
            f"http://127.0.0.1:{port}": "api",
            f"http://127.0.0.1:{port + 1}": "media",
            f"http://127.0.0.1:{port + 2}": "media",
        }, roles
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        try:
            deadline = time.monotonic() + 30
            for child in (port + 1, port + 2):  # the children end with the parent (their shutdown takes a moment)
                while True:
                    try:
                        httpx.get(f"http://127.0.0.1:{child}/healthz", timeout=2)
                    except httpx.TransportError:
                        break
                    assert time.monotonic() < deadline, f"media process on {child} still runs"
                    time.sleep(0.2)
        finally:
            time.sleep(1)  # a stopping node's last registry write (it marks itself dead) lands as it exits
            keys = list(r.scan_iter(f"{prefix}*"))
            if keys:
                r.delete(*keys)
