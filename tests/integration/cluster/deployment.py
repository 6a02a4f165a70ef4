"""A scaled roomtape deployment as separate processes on loopback: api node, media nodes, workers.

Shared by the scale-out test and ``bench/scaleout.py``: PostgreSQL (a fresh database), Redis (fresh key
prefixes), one data directory (one host), local-disk storage, and a webhook receiver.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from tests.conftest import PG_ADMIN_DSN, _pg, free_port, wait_healthy

BIN = Path(sys.executable).parent
__all__ = ["PG_ADMIN_DSN", "REDIS_URL", "Deployment", "Node", "deployment", "free_port"]
REDIS_URL = os.environ.get("ROOMTAPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@dataclass
class Node:
    """One process of the deployment."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass
class Deployment:
    """The processes, their shared environment and the demo app's credentials."""

    tmp: Path
    env: dict[str, str]
    prefix: str
    account_id: str = ""
    app_id: str = ""
    api_token: str = ""
    api: Node | None = None
    media: list[Node] = field(default_factory=list)
    workers: list[Node] = field(default_factory=list)

    @property
    def base(self) -> str:
        assert self.api is not None
        return self.api.url

    @property
    def rtk(self) -> str:
        return f"{self.base}/accounts/{self.account_id}/realtime/kit/{self.app_id}"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}

    @property
    def bucket(self) -> Path:
        return self.tmp / "bucket"

    def redis(self) -> redis.Redis:
        return redis.Redis.from_url(REDIS_URL, decode_responses=True)

    def node_of_room(self, meeting_id: str) -> str | None:
        value = self.redis().get(f"{self.prefix}:room:{meeting_id}")
        return str(value) if value is not None else None

    def node_ids(self) -> dict[str, str]:
        """Node id → name (``media-0`` ...), read from the registry's node URLs."""
        r = self.redis()
        by_url = {n.url: n.name for n in self.media}
        out: dict[str, str] = {}
        for node_id in r.zrange(f"{self.prefix}:nodes", 0, -1):
            url = r.hget(f"{self.prefix}:node:{node_id}", "url")
            if url in by_url:
                out[str(node_id)] = by_url[str(url)]
        return out

    def _spawn(self, name: str, args: list[str], env: dict[str, str], url: str) -> Node:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [str(BIN / "roomtape"), *args], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
        )
        return Node(name, url, proc, log)

    def start_server(self, name: str, role: str, port: int | None = None, **env: str) -> Node:
        """A ``roomtape serve`` process; ``env`` overrides the deployment's (e.g. a data dir of its own)."""
        port = port or free_port()
        url = f"http://127.0.0.1:{port}"
        node_env = {**self.env, "ROOMTAPE_ROLE": role, "ROOMTAPE_PORT": str(port), "ROOMTAPE_NODE_URL": url, **env}
        return self._spawn(name, ["serve", "--no-demo"], node_env, url)

    def start_worker(self, name: str, **env: str) -> Node:
        """A ``roomtape worker`` process; ``env`` overrides the deployment's."""
        return self._spawn(name, ["worker"], {**self.env, **env}, "")

    @staticmethod
    def wait_healthy(node: Node) -> None:
        wait_healthy(node.url, node.process, node.log)

    def registered(self, count: int, within: float = 30) -> None:
        """Wait until ``count`` media nodes have heartbeated."""
        deadline = time.monotonic() + within
        while len(self.node_ids()) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{count} media nodes did not register: {self.node_ids()}")
            time.sleep(0.1)

    def stop(self) -> None:
        nodes = [n for n in (self.api, *self.media, *self.workers) if n is not None]
        for node in nodes:
            if node.process.poll() is None:
                node.process.send_signal(signal.SIGTERM)
        for node in nodes:
            try:
                node.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()

    def logs(self) -> str:
        nodes = [n for n in (self.api, *self.media, *self.workers) if n is not None]
        return "\n".join(f"==== {n.name}\n{n.log.read_text()[-3000:]}" for n in nodes)


@asynccontextmanager
async def deployment(
    tmp: Path, media_nodes: int = 2, workers: int = 2, api_role: str = "api", **env: str
) -> AsyncIterator[Deployment]:
    """Start PostgreSQL database, api node, media nodes and workers; stop and drop them afterwards.

    ``api_role="all"`` with no media nodes (and ``ROOMTAPE_CLUSTER_URL=""``) is the embedded single process.
    """
    name = f"roomtape_scale_{uuid.uuid4().hex[:10]}"
    await _pg(f'CREATE DATABASE "{name}"')
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    prefix = f"roomtape-test:{uuid.uuid4().hex[:10]}"
    api_port = free_port()
    dep = Deployment(
        tmp=tmp,
        prefix=prefix,
        env={
            **os.environ,
            "ROOMTAPE_DATA_DIR": str(tmp / "data"),
            "ROOMTAPE_DATABASE_URL": f"{base}/{name}",
            "ROOMTAPE_SECRET_KEY": "s" * 48,
            # Join links and download URLs, signed by any process, point at the api node.
            "ROOMTAPE_PUBLIC_URL": f"http://127.0.0.1:{api_port}",
            "ROOMTAPE_CLUSTER_URL": REDIS_URL,
            "ROOMTAPE_CLUSTER_PREFIX": prefix,
            "ROOMTAPE_BROKER_URL": REDIS_URL,
            "ROOMTAPE_BROKER_QUEUE": f"{prefix}:jobs",
            "ROOMTAPE_BROKER_CLAIM_IDLE_MS": "3000",
            "ROOMTAPE_BROKER_LOCK_MS": "3000",
            "ROOMTAPE_STORAGE_URL": f"file://{tmp / 'bucket'}",
            "ROOMTAPE_ICE_HOST_ADDRESSES": "127.0.0.1",
            "ROOMTAPE_SESSION_KEEP_ALIVE_SCALE": "0.02",
            "ROOMTAPE_WEBHOOK_BACKOFF_BASE_SECS": "0.2",
            "ROOMTAPE_OUTBOUND_ALLOW_CIDRS": "127.0.0.0/8",
            **env,
        },
    )
    try:
        created = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "roomtape"), "apps", "create", "--name", "scale"],
            env=dep.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )  # also migrates the database, before several processes start on it
        creds: dict[str, Any] = json.loads(created.stdout)
        dep.account_id, dep.app_id, dep.api_token = creds["account_id"], creds["app_id"], creds["api_token"]
        dep.api = dep.start_server("api", api_role, api_port)
        dep.media = [dep.start_server(f"media-{i}", "media") for i in range(media_nodes)]
        dep.workers = [dep.start_worker(f"worker-{i}") for i in range(workers)]
        for node in (dep.api, *dep.media):
            await asyncio.to_thread(dep.wait_healthy, node)
        await asyncio.to_thread(dep.registered, media_nodes)
        yield dep
    finally:
        dep.stop()
        for _ in range(3):
            try:
                await _pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                break
            except Exception:
                await asyncio.sleep(1)
        r = dep.redis()
        keys = list(r.scan_iter(f"{prefix}*"))
        if keys:
            r.delete(*keys)
