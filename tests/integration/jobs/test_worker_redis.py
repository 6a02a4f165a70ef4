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

import av
import pytest
import redis
import standardwebhooks
from sqlalchemy import select
from tests.conftest import free_port
from tests.integration.jobs.recordings import stop_worker, stopped_composite, stopped_recording
from tests.integration.webhooks.receiver import Receiver

from roomtape.config import Settings
from roomtape.db.models import OutboxEvent, Recording, Webhook
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.jobs.distributed import DistributedRunner
from roomtape.webhooks import signing

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
        stop_worker(worker)
        await receiver.stop()
        await deps.engine.dispose()
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{queue}*"):
            r.delete(key)
    assert worker.returncode == 0, (tmp_path / "worker.log").read_text()[-3000:]


def _start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(BIN / "roomtape"), "worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def _recording(deps: WorkerDeps, rec_id: str) -> Recording:
    async with deps.sessions() as db:
        rec = await db.get(Recording, rec_id)
        assert rec is not None
        return rec


async def test_sigkill_mid_compose_a_second_worker_finishes_once(tmp_path: Path) -> None:
    """A worker renders a composite and is SIGKILLed mid-render; a second worker claims the job, renders,
    uploads: one file per key, no temporary file in the storage, the UPLOADED webhook delivered once."""
    queue = f"roomtape-test:{uuid.uuid4().hex}"
    bucket = tmp_path / "bucket"
    timing = {"broker_claim_idle_ms": 1500, "broker_lock_ms": 1500}
    env = {
        **os.environ,
        "ROOMTAPE_DATA_DIR": str(tmp_path),
        "ROOMTAPE_SECRET_KEY": "k" * 40,
        "ROOMTAPE_BROKER_URL": REDIS_URL,
        "ROOMTAPE_BROKER_QUEUE": queue,
        "ROOMTAPE_STORAGE_URL": f"file://{bucket}",
        **{f"ROOMTAPE_{k.upper()}": str(v) for k, v in timing.items()},
    }
    deps = await open_deps(
        Settings(data_dir=tmp_path, secret_key="k" * 40, broker_url=REDIS_URL, broker_queue=queue, **timing)
    )
    port = free_port()
    receiver = Receiver(port)
    await receiver.start()
    seconds = 30.0
    rec_id, app_id = await stopped_composite(deps, seconds)
    async with deps.sessions() as db:
        db.add(
            Webhook(
                app_id=app_id,
                name="h",
                url=f"http://127.0.0.1:{port}/h",
                events=["recording.statusUpdate"],
                secret=deps.box.seal("kill-test-secret"),
            )
        )
        await db.commit()
    log = tmp_path / "workers.log"
    workers: list[subprocess.Popen[bytes]] = []
    try:
        # Worker A finds the UPLOADING recording at start-up and starts rendering it.
        workers.append(_start_worker(env, log))
        progress: dict[str, object] = {}
        for _ in range(1200):
            progress = (await _recording(deps, rec_id)).config.get("progress") or {}
            if float(progress.get("fraction", 0.0)) > 0.0 and not progress.get("done"):  # type: ignore[arg-type]
                break
            assert workers[0].poll() is None, log.read_text()[-3000:]
            await asyncio.sleep(0.05)
        assert progress and not progress.get("done"), f"no render in progress seen: {progress}"
        workers[0].send_signal(signal.SIGKILL)
        workers[0].wait(10)
        killed = await _recording(deps, rec_id)
        print(f"\nworker A SIGKILLed at render progress {progress.get('fraction')}")
        assert killed.status == "UPLOADING" and not (killed.config.get("progress") or {}).get("done")
        assert not bucket.exists() or not any(p.suffix == ".mp4" for p in bucket.rglob("*"))

        # Worker B claims A's unacknowledged job (and queues its own start-up copy of it): it finishes once.
        workers.append(_start_worker(env, log))
        rec = killed
        for _ in range(1800):
            rec = await _recording(deps, rec_id)
            if rec.status != "UPLOADING" and receiver.received:
                break
            await asyncio.sleep(0.1)
        assert rec.status == "UPLOADED", f"{rec.status} {rec.error}\n" + log.read_text()[-3000:]
        await asyncio.sleep(1.0)  # anything duplicated would show up now

        stored = sorted(p.relative_to(bucket).as_posix() for p in bucket.rglob("*") if p.is_file())
        prefix = f"{app_id}/"
        assert all(k.startswith(prefix) for k in stored)
        names = [k.removeprefix(prefix) for k in stored]
        tracks = [n for n in names if n.endswith(".webm")]
        manifests = [n for n in names if n.endswith("manifest.json")]
        assert names.count(rec.output_file_name) == 1
        assert len(tracks) == 4 and len(manifests) == 4
        assert sorted([rec.output_file_name, *tracks, *manifests]) == sorted(names), names  # nothing else
        with av.open(str(bucket / prefix / rec.output_file_name)) as container:
            assert container.duration is not None
            assert abs(container.duration / 1e6 - seconds) < 0.2
            assert container.streams.video and container.streams.audio

        async with deps.sessions() as db:
            events = list(await db.scalars(select(OutboxEvent).where(OutboxEvent.app_id == app_id)))
        uploaded = [e for e in events if e.payload["recording"]["status"] == "UPLOADED"]
        assert len(uploaded) == 1  # the job ran to its end once, though two workers held it
        got = [r for r in receiver.received if r.headers["webhook-id"] == uploaded[0].id]
        assert len(got) == 1
        verifier = standardwebhooks.Webhook(signing.standard_secret(b"kill-test-secret"))
        assert verifier.verify(got[0].body, got[0].headers)["recording"]["downloadUrl"] == rec.download_url
        pending = redis.Redis.from_url(REDIS_URL).xpending(queue, "roomtape-workers")
        assert pending["pending"] == 0  # every message, the killed worker's too, acknowledged
    finally:
        for worker in workers:
            stop_worker(worker)
        await receiver.stop()
        await deps.engine.dispose()
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{queue}*"):
            r.delete(key)
    assert workers[-1].returncode == 0, log.read_text()[-3000:]


async def test_idle_worker_claims_an_unacknowledged_message_but_not_a_heartbeated_one() -> None:
    """The broker under the workers: a message whose consumer died is claimed by a worker that gets no new
    messages; one whose consumer is alive (heartbeating) is not, however long its job runs."""
    from taskiq.message import BrokerMessage

    from roomtape.jobs.distributed import ClaimingStreamBroker

    queue = f"roomtape-test:{uuid.uuid4().hex}"

    def broker() -> ClaimingStreamBroker:
        b = ClaimingStreamBroker(
            # 1.2 s before a pending message counts as dead: a heartbeat every 0.4 s leaves room for a loaded
            # machine (at 0.6 s one CI run saw the live job claimed).
            REDIS_URL,
            queue,
            1200,
            consumer_group_name="g",
            consumer_id="0",
            xread_block=100,
            xread_count=1,
        )
        b.is_worker_process = True
        return b

    dead, alive, idle = broker(), broker(), broker()
    for b in (dead, alive, idle):
        await b.startup()
    try:
        for n in (b"dead-job", b"live-job"):
            await dead.kick(BrokerMessage(task_id=n.decode(), task_name="t", message=n, labels={}))
        dead_listen, alive_listen = dead.listen(), alive.listen()
        first = await anext(dead_listen)  # read, never acknowledged: this consumer "dies"
        assert first.data == b"dead-job"
        await dead_listen.aclose()
        dead._held.clear()  # a killed process heartbeats nothing
        second = await anext(alive_listen)  # read and heartbeated while its job runs
        assert second.data == b"live-job"
        got: list[bytes] = []

        async def collect() -> None:
            async for message in idle.listen():
                got.append(message.data)
                await message.ack()  # type: ignore[misc]

        collector = asyncio.create_task(collect())
        await asyncio.sleep(4.0)  # more than three claim periods
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        assert got == [b"dead-job"]
        await second.ack()  # type: ignore[misc]
        assert redis.Redis.from_url(REDIS_URL).xpending(queue, "g")["pending"] == 0
        await alive_listen.aclose()
    finally:
        for b in (dead, alive, idle):
            await b.shutdown()
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{queue}*"):
            r.delete(key)
