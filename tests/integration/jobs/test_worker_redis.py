"""The distributed path: a real ``roomtape worker`` subprocess on the local Redis uploads and notifies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from tests.conftest import free_port
from tests.integration.jobs.recordings import stopped_recording
from tests.integration.webhooks.receiver import Receiver

from roomtape.config import Settings
from roomtape.db.models import Recording, Webhook
from roomtape.jobs.deps import open_deps
from roomtape.jobs.distributed import DistributedRunner

REDIS_URL = os.environ.get("ROOMTAPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BIN = Path(sys.executable).parent


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture(autouse=True)
def redis_is_up() -> None:
    # No skipping: `make test` starts Redis (scripts/setup-system.sh); its absence is a failure.
    assert _redis_up(), f"no Redis at {REDIS_URL}: run `make test`, which starts it"


async def test_worker_uploads_and_delivers(tmp_path: Path) -> None:
    queue = f"roomtape-test:{uuid.uuid4().hex}"
    env = {
        **os.environ,
        "ROOMTAPE_DATA_DIR": str(tmp_path),
        "ROOMTAPE_SECRET_KEY": "w" * 40,
        "ROOMTAPE_BROKER_URL": REDIS_URL,
        "ROOMTAPE_BROKER_QUEUE": queue,
        "ROOMTAPE_STORAGE_URL": f"file://{tmp_path / 'bucket'}",
    }
    settings = Settings(
        data_dir=tmp_path,
        secret_key="w" * 40,
        broker_url=REDIS_URL,
        broker_queue=queue,
        storage_url=f"file://{tmp_path / 'bucket'}",
    )
    deps = await open_deps(settings)
    port = free_port()
    receiver = Receiver(port)
    await receiver.start()
    first, files = await stopped_recording(deps, config={"bucket_dir_path": "vsdk/dir"})
    async with deps.sessions() as db:
        rec = await db.get(Recording, first)
        assert rec is not None
        db.add(
            Webhook(
                app_id=rec.app_id,
                name="h",
                url=f"http://127.0.0.1:{port}/h",
                events=["recording.statusUpdate"],
                secret=deps.box.seal("whsecret"),
            )
        )
        await db.commit()
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; the test awaits its results
        [str(BIN / "roomtape"), "worker"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    try:
        # The first recording was UPLOADING before the worker started: it is re-derived at start-up.
        # The second is queued by the server's runner while the worker runs.
        second, _ = await stopped_recording(deps)
        runner = DistributedRunner(deps)
        await runner.start()
        await runner.submit_upload(second)
        await runner.stop()
        statuses: dict[str, str] = {}
        for _ in range(300):
            async with deps.sessions() as db:
                statuses = {i: (await db.get(Recording, i)).status for i in (first, second)}  # type: ignore[union-attr]
            if set(statuses.values()) == {"UPLOADED"} and receiver.received:
                break
            await asyncio.sleep(0.1)
        assert statuses == {first: "UPLOADED", second: "UPLOADED"}, (tmp_path / "worker.log").read_text()[-3000:]
        for rel, data in files.items():
            assert (tmp_path / "bucket" / "vsdk" / "dir" / rel).read_bytes() == data
        for _ in range(50):
            if len(receiver.received) >= 1:
                break
            await asyncio.sleep(0.1)
        body = json.loads(receiver.received[0].body)
        assert body["recording"]["id"] == first and body["recording"]["status"] == "UPLOADED"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            worker.kill()
        await receiver.stop()
        await deps.engine.dispose()
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{queue}*"):
            r.delete(key)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]
