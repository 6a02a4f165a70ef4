"""Fixtures shared by every test: free ports, a fresh PostgreSQL database, a real roomtape server."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

# Tests talk to servers on loopback (webhook receivers, storage emulators): allow exactly that. Every
# Settings() built in-process and every server or worker subprocess (they inherit os.environ) sees it;
# tests of the refusal build their Settings with outbound_allow_cidrs="" explicitly.
os.environ.setdefault("ROOMTAPE_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8,::1/128")
PG_ADMIN_DSN = os.environ.get("ROOMTAPE_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/postgres")
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pg(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def run_sync(coro: Any) -> Any:
    """Run a coroutine to completion from sync code, even while an event loop runs in this thread
    (an async test's fixtures, Playwright's sync API): on a thread of its own."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.fixture(scope="session")
def pg_database_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run, dropped afterwards."""
    name = f"roomtape_test_{uuid.uuid4().hex[:12]}"
    run_sync(_pg(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    try:
        yield f"{base}/{name}"
    finally:
        run_sync(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_url_for(backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}"
    return str(request.getfixturevalue("pg_database_url"))


@dataclass
class Server:
    """A roomtape server running in a subprocess, with the credentials of one app."""

    base_url: str
    data_dir: Path
    database_url: str
    account_id: str
    app_id: str
    api_token: str
    process: subprocess.Popen[bytes]
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN / "roomtape"), *args], env=self.env, capture_output=True, text=True, timeout=60, check=False
        )

    def new_app(self, name: str = "other") -> dict[str, str]:
        out = self.cli("apps", "create", "--name", name)
        assert out.returncode == 0, out.stderr
        return dict(json.loads(out.stdout))


def wait_healthy(base: str, proc: subprocess.Popen[bytes], log: Path, within: float = 120) -> None:
    """Wait for a server subprocess to answer ``/healthz``; kill it and raise with its log if it does not."""
    deadline = time.monotonic() + within  # generous: the 2 shared cores are often busy (36 s seen at load 16)
    while True:
        try:
            if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()  # never leave a half-started server behind
            raise RuntimeError(f"server did not start:\n{log.read_text()[-6000:]}")
        time.sleep(0.1)


def start_server(data_dir: Path, database_url: str, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "ROOMTAPE_DATA_DIR": str(data_dir),
        "ROOMTAPE_DATABASE_URL": database_url,
        "ROOMTAPE_PORT": str(port),
        **(extra_env or {}),
    }
    creds = subprocess.run(
        [str(BIN / "roomtape"), "apps", "create", "--name", "tests"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    app = json.loads(creds.stdout)
    log = open(data_dir / "server.log", "wb")
    proc = subprocess.Popen(
        [str(BIN / "roomtape"), "serve", "--no-demo"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, proc, data_dir / "server.log")
    return Server(base, data_dir, database_url, app["account_id"], app["app_id"], app["api_token"], proc, env)


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real roomtape server on a free port, once on SQLite and once on PostgreSQL."""
    tmp = tmp_path_factory.mktemp(f"server-{request.param}")
    srv = start_server(tmp, database_url_for(request.param, tmp, request))
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(autouse=True)
def loopback_ice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Gather ICE host candidates on 127.0.0.1 only: tests talk to loopback (and aioice skips it by default)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "get_host_addresses", lambda use_ipv4, use_ipv6: ["127.0.0.1"])
