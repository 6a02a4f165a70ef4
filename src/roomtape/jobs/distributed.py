"""Distributed jobs on taskiq with a Redis stream broker (``ROOMTAPE_BROKER_URL=redis://...``).

Why taskiq: it is asyncio-native like the rest of roomtape (Celery and Dramatiq run sync workers), and
``taskiq-redis``'s ``RedisStreamBroker`` acknowledges a message only after the task finished: a worker
killed mid-job leaves it pending, and another worker claims it once it has been idle ``idle_timeout`` ms.

- The server (:class:`DistributedRunner`) enqueues uploads; it runs no jobs itself.
- ``roomtape worker`` (:func:`run_worker`) runs them. An upload task retries a storage that is down inside
  the task (its message stays unacknowledged meanwhile) and holds a per-recording Redis lock, so two
  workers never upload the same recording at once. The worker holding the ``dispatcher`` lease delivers
  webhooks from the outbox (one deliverer per database keeps per-target order).
- Both re-derive at start-up: every recording in ``UPLOADING`` is enqueued again (idempotent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from typing import Any

import redis.asyncio as aioredis
from taskiq import AsyncBroker
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from roomtape.config import Settings
from roomtape.jobs.deps import JobDeps, open_deps
from roomtape.jobs.runner import upload_until_done, uploading_ids
from roomtape.webhooks.delivery import Deliverer

log = logging.getLogger(__name__)

UPLOAD_TASK = "roomtape.upload_recording"
LOCK_MS = 30_000
"""Per-recording upload lock and dispatcher lease lifetime; refreshed every third of it while held."""
CLAIM_IDLE_MS = 30_000
"""A message unacknowledged this long (its worker died) is claimed by another worker."""


def make_broker(settings: Settings) -> RedisStreamBroker:
    """The stream broker; ``consumer_id="0"`` so jobs queued before any worker started are not skipped."""
    return RedisStreamBroker(
        url=settings.broker_url,
        queue_name=settings.broker_queue,
        consumer_group_name="roomtape-workers",
        consumer_id="0",
        idle_timeout=CLAIM_IDLE_MS,
        xread_block=1000,
    )


class DistributedRunner:
    """The server's side: enqueue only."""

    def __init__(self, deps: JobDeps) -> None:
        self._deps = deps
        self._broker = make_broker(deps.settings)

    async def start(self) -> None:
        """Connect and re-enqueue unfinished uploads."""
        await self._broker.startup()
        for recording_id in await uploading_ids(self._deps):
            await self.submit_upload(recording_id)

    async def submit_upload(self, recording_id: str) -> None:
        """Queue the upload for a worker."""
        kicker: AsyncKicker[[str], None] = AsyncKicker(UPLOAD_TASK, self._broker, {})
        await kicker.kiq(recording_id)

    def events_committed(self) -> None:
        """Workers poll the outbox; nothing to do."""

    async def stop(self) -> None:
        """Disconnect."""
        await self._broker.shutdown()


class _Lease:
    """A Redis key held by one owner, refreshed while held (best effort, single Redis)."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self._client = client
        self._key = key
        self._owner = uuid.uuid4().hex

    async def acquire(self) -> bool:
        if await self._client.set(self._key, self._owner, nx=True, px=LOCK_MS):
            return True
        current = await self._client.get(self._key)
        if current == self._owner:
            await self._client.pexpire(self._key, LOCK_MS)
            return True
        return False

    async def release(self) -> None:
        current = await self._client.get(self._key)
        if current == self._owner:
            await self._client.delete(self._key)


def register_tasks(broker: AsyncBroker, deps: JobDeps, client: aioredis.Redis, prefix: str) -> None:
    """Register the worker's task functions on ``broker``."""

    async def upload(recording_id: str) -> None:
        lease = _Lease(client, f"{prefix}:lock:upload:{recording_id}")
        if not await lease.acquire():
            log.info("recording %s is being uploaded by another worker", recording_id)
            return

        async def keep() -> None:
            while True:
                await asyncio.sleep(LOCK_MS / 3000)
                await lease.acquire()

        keeper = asyncio.create_task(keep())
        try:
            await upload_until_done(deps, recording_id)
        finally:
            keeper.cancel()
            await lease.release()

    broker.register_task(upload, task_name=UPLOAD_TASK)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None, max_async_tasks: int = 8) -> None:
    """``roomtape worker``: run queued jobs and deliver webhooks until SIGTERM/SIGINT (or ``stop``)."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    deps = await open_deps(settings)
    client: aioredis.Redis = aioredis.from_url(settings.broker_url, decode_responses=True)
    broker = make_broker(settings)
    register_tasks(broker, deps, client, settings.broker_queue)
    broker.is_worker_process = True
    await broker.startup()
    receiver = Receiver(broker, run_startup=False, max_async_tasks=max_async_tasks)
    lease = _Lease(client, f"{settings.broker_queue}:lease:dispatcher")
    deliverer = Deliverer(deps.sessions, settings, deps.secret_key, deps.box)
    kicker = DistributedRunner(deps)
    kicker._broker = broker
    tasks: list[asyncio.Task[Any]] = []
    try:
        for recording_id in await uploading_ids(deps):
            await kicker.submit_upload(recording_id)
        tasks = [
            asyncio.create_task(receiver.listen(stop), name="jobs"),
            asyncio.create_task(deliverer.run(stop, may_run=lease.acquire), name="webhook-delivery"),
        ]
        log.info("roomtape worker: consuming %s", settings.broker_queue)
        print(f"roomtape worker: consuming {settings.broker_queue}", flush=True)
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await lease.release()
        await deliverer.aclose()
        await broker.shutdown()
        await client.aclose()
        await deps.engine.dispose()
