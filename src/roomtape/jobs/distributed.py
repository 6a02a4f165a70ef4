"""Distributed jobs on taskiq with a Redis stream broker (``ROOMTAPE_BROKER_URL=redis://...``).

Why taskiq: it is asyncio-native like the rest of roomtape (Celery and Dramatiq run sync workers), and
``taskiq-redis``'s ``RedisStreamBroker`` acknowledges a message only after the task finished, so a worker
killed mid-job leaves its message pending in the stream's consumer group.

:class:`ClaimingStreamBroker` makes that recovery dependable:

- every worker claims (``XAUTOCLAIM``) messages idle for ``broker_claim_idle_ms`` after each read, also when the
  read returned nothing (``RedisStreamBroker`` only does it after a read that returned messages, so an
  idle worker would never take over a dead one's job);
- a worker heartbeats the messages it holds (``XCLAIM`` to itself, which resets their idle time) every
  third of that, so a long job (a composite render) is never claimed away from a live worker.

The jobs:

- The server (:class:`DistributedRunner`) enqueues recording jobs; it runs no jobs itself.
- ``roomtape worker`` (:func:`run_worker`) runs them: render the composite if it is missing
  (:mod:`roomtape.jobs.compose`), then upload (retrying a storage that is down inside the task, its message
  unacknowledged and heartbeated meanwhile). A per-recording Redis lock makes two workers never work on the
  same recording at once; a worker that finds it taken waits for it, then finds the job done (or takes
  over once a dead holder's lock expired after ``broker_lock_ms``). The worker holding the ``dispatcher``
  lease delivers webhooks from the outbox (one deliverer per database keeps per-target order).
- Live transcription jobs (one closed audio segment each, :mod:`roomtape.jobs.transcribe_live`) are queued
  by the server as segments close; the worker reads the segment file from the shared ``data_dir``. With a
  recording spool (``ROOMTAPE_SPOOL_URL``: no shared data directory) they run on the server that wrote the
  files instead.
- Both re-derive at start-up: every recording in ``UPLOADING`` is enqueued again (idempotent), and the
  server also re-enqueues unfinished summaries and live segments.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import uuid
from collections.abc import AsyncGenerator
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio import Redis
from taskiq import AckableMessage, AsyncBroker
from taskiq.kicker import AsyncKicker
from taskiq.receiver import Receiver
from taskiq_redis import RedisStreamBroker

from roomtape.config import Settings
from roomtape.jobs.deps import JobDeps, open_deps
from roomtape.jobs.recording import recording_job, segment_ids, summary_ids, uploading_ids
from roomtape.jobs.summarize import summarize_session
from roomtape.jobs.transcribe_live import LocalTranscriptions, transcribe_segment
from roomtape.webhooks.delivery import Deliverer

log = logging.getLogger(__name__)

UPLOAD_TASK = "roomtape.upload_recording"
"""The recording job's task name (kept from when the job only uploaded, so queued messages still run)."""

SUMMARY_TASK = "roomtape.summarize_session"
"""The summary job's task name."""

TRANSCRIBE_TASK = "roomtape.transcribe_segment"
"""The live transcription job's task name (one closed audio segment)."""

_HEARTBEAT = """
local stream, group, consumer = KEYS[1], ARGV[1], ARGV[2]
local lost = {}
for i = 3, #ARGV do
  local mine = redis.call('XPENDING', stream, group, ARGV[i], ARGV[i], 1, consumer)
  if #mine == 1 then
    redis.call('XCLAIM', stream, group, consumer, 0, ARGV[i], 'JUSTID')
  else
    table.insert(lost, ARGV[i])
  end
end
return lost
"""
"""Reset the idle time of the messages this consumer still owns; return the ids it no longer owns."""


class ClaimingStreamBroker(RedisStreamBroker):
    """A ``RedisStreamBroker`` whose workers claim dead workers' messages and heartbeat their own.

    Args:
        url: Redis URL.
        queue_name: The stream.
        claim_idle_ms: Idle time after which a pending message is claimed by another worker.
        **kwargs: Passed to ``RedisStreamBroker``.
    """

    def __init__(self, url: str, queue_name: str, claim_idle_ms: int, **kwargs: Any) -> None:
        super().__init__(url=url, queue_name=queue_name, idle_timeout=claim_idle_ms, **kwargs)
        self._held: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None

    def _message(self, msg_id: Any, fields: Any) -> AckableMessage | None:
        key = msg_id.decode() if isinstance(msg_id, bytes) else str(msg_id)
        if fields is None:  # deleted from the stream meanwhile: nothing to run
            return None
        self._held.add(key)
        ack = self._ack_generator(id=key, queue_name=self.queue_name)

        async def acknowledge() -> None:
            await ack()
            self._held.discard(key)

        return AckableMessage(data=fields[b"data"], ack=acknowledge)

    async def _beat(self) -> None:
        interval = self.idle_timeout / 3000
        async with Redis(connection_pool=self.connection_pool) as conn:
            script = conn.register_script(_HEARTBEAT)
            while True:
                await asyncio.sleep(interval)
                held = sorted(self._held)
                if not held:
                    continue
                try:
                    lost = await script(
                        keys=[self.queue_name], args=[self.consumer_group_name, self.consumer_name, *held]
                    )
                except Exception:
                    log.exception("job heartbeat failed; retrying")
                    continue
                for msg_id in lost or []:
                    key = msg_id.decode() if isinstance(msg_id, bytes) else str(msg_id)
                    log.warning("job message %s was claimed by another worker", key)
                    self._held.discard(key)

    async def listen(self) -> AsyncGenerator[AckableMessage, None]:
        """New messages, then messages idle longer than ``claim_idle_ms`` (dead workers'), forever."""
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat(), name="job-heartbeat")
        async with Redis(connection_pool=self.connection_pool) as conn:
            while True:
                fetched: Any = await conn.xreadgroup(
                    self.consumer_group_name,
                    self.consumer_name,
                    {self.queue_name: ">"},
                    block=self.block,
                    count=self.count,
                )
                for _stream, entries in fetched or []:
                    for msg_id, fields in entries:
                        if (message := self._message(msg_id, fields)) is not None:
                            yield message
                claimed = await conn.xautoclaim(
                    self.queue_name,
                    self.consumer_group_name,
                    self.consumer_name,
                    min_idle_time=self.idle_timeout,
                    count=self.unacknowledged_batch_size,
                )
                for msg_id, fields in claimed[1] if claimed else []:
                    if msg_id is None:
                        continue
                    log.info("claimed job message %r of a worker that stopped answering", msg_id)
                    if (message := self._message(msg_id, fields)) is not None:
                        yield message
                    else:
                        await conn.xack(self.queue_name, self.consumer_group_name, msg_id)

    async def shutdown(self) -> None:
        """Stop heartbeating (held messages become claimable), then close the pool."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
            self._heartbeat = None
        await super().shutdown()


def make_broker(settings: Settings) -> ClaimingStreamBroker:
    """The stream broker; ``consumer_id="0"`` so jobs queued before any worker started are not skipped."""
    return ClaimingStreamBroker(
        settings.broker_url,
        settings.broker_queue,
        settings.broker_claim_idle_ms,
        consumer_group_name="roomtape-workers",
        consumer_id="0",
        xread_block=min(1000, max(100, settings.broker_claim_idle_ms // 3)),
    )


class DistributedRunner:
    """The server's side: enqueue only."""

    def __init__(self, deps: JobDeps) -> None:
        self._deps = deps
        self._broker = make_broker(deps.settings)
        # With a recording spool there is no shared data directory: a worker could not read the live
        # transcription's segment files, so their jobs run here, on the node that wrote them.
        self._local_stt = LocalTranscriptions(deps) if deps.settings.spool_url else None

    async def start(self) -> None:
        """Connect and re-enqueue unfinished uploads."""
        await self._broker.startup()
        for recording_id in await uploading_ids(self._deps):
            await self.submit_upload(recording_id)
        for session_id in await summary_ids(self._deps):
            await self.submit_summary(session_id)
        for segment_id in await segment_ids(self._deps):
            await self.submit_transcription(segment_id)

    async def submit_upload(self, recording_id: str) -> None:
        """Queue the upload for a worker."""
        kicker: AsyncKicker[[str], None] = AsyncKicker(UPLOAD_TASK, self._broker, {})
        await kicker.kiq(recording_id)

    async def submit_summary(self, session_id: str) -> None:
        """Queue the session's summary for a worker."""
        kicker: AsyncKicker[[str], None] = AsyncKicker(SUMMARY_TASK, self._broker, {})
        await kicker.kiq(session_id)

    async def submit_transcription(self, segment_id: str) -> None:
        """Queue a live segment's transcription for a worker, which reads the shared data directory.

        With a recording spool (``spool_url``: no shared data directory) the job runs in this process.
        """
        if self._local_stt is not None:
            self._local_stt.submit(segment_id)
            return
        kicker: AsyncKicker[[str], None] = AsyncKicker(TRANSCRIBE_TASK, self._broker, {})
        await kicker.kiq(segment_id)

    def events_committed(self) -> None:
        """Workers poll the outbox; nothing to do."""

    async def stop(self) -> None:
        """Disconnect (and cancel local transcription jobs: resumed at the next start)."""
        if self._local_stt is not None:
            await self._local_stt.stop()
        await self._broker.shutdown()


class _Lease:
    """A Redis key held by one owner for ``ttl_ms``, refreshed while held (best effort, single Redis)."""

    def __init__(self, client: aioredis.Redis, key: str, ttl_ms: int) -> None:
        self._client = client
        self._key = key
        self._ttl_ms = ttl_ms
        self._owner = uuid.uuid4().hex

    async def acquire(self) -> bool:
        if await self._client.set(self._key, self._owner, nx=True, px=self._ttl_ms):
            return True
        current = await self._client.get(self._key)
        if current == self._owner:
            await self._client.pexpire(self._key, self._ttl_ms)
            return True
        return False

    async def release(self) -> None:
        current = await self._client.get(self._key)
        if current == self._owner:
            await self._client.delete(self._key)


def register_tasks(broker: AsyncBroker, deps: JobDeps, client: aioredis.Redis, prefix: str) -> None:
    """Register the worker's task functions on ``broker``."""
    lock_ms = deps.settings.broker_lock_ms

    async def recording(recording_id: str) -> None:
        lease = _Lease(client, f"{prefix}:lock:upload:{recording_id}", lock_ms)
        waited = False
        while not await lease.acquire():  # another worker has it (or had it and died): wait it out
            if not waited:
                log.info("recording %s is being worked on by another worker; waiting", recording_id)
                waited = True
            await asyncio.sleep(lock_ms / 3000)

        async def keep() -> None:
            while True:
                await asyncio.sleep(lock_ms / 3000)
                await lease.acquire()

        keeper = asyncio.create_task(keep())
        try:
            await recording_job(deps, recording_id)
        finally:
            keeper.cancel()
            await lease.release()

    broker.register_task(recording, task_name=UPLOAD_TASK)

    async def summary(session_id: str) -> None:
        # Idempotent: a second run finds the row COMPLETED (or RUNNING, redone: same transcript, same text).
        await summarize_session(deps, session_id)

    broker.register_task(summary, task_name=SUMMARY_TASK)

    async def transcription(segment_id: str) -> None:
        # Idempotent: a second run finds the segment done (or, resumed, replaces its own items).
        await transcribe_segment(deps, segment_id)

    broker.register_task(transcription, task_name=TRANSCRIBE_TASK)


async def _hold(lease: _Lease, held: asyncio.Event, interval: float) -> None:
    """Keep trying to hold ``lease``; ``held`` says whether this worker holds it now."""
    while True:
        try:
            ok = await lease.acquire()
        except Exception:
            log.exception("dispatcher lease check failed")
            ok = False
        if ok:
            held.set()
        else:
            held.clear()
        await asyncio.sleep(interval)


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
    lease = _Lease(client, f"{settings.broker_queue}:lease:dispatcher", settings.broker_lock_ms)
    dispatcher = asyncio.Event()
    deliverer = Deliverer(deps.sessions, settings, deps.secret_key, deps.box)

    async def may_deliver() -> bool:
        return dispatcher.is_set()

    kicker = DistributedRunner(deps)
    kicker._broker = broker
    tasks: list[asyncio.Task[Any]] = []
    try:
        for recording_id in await uploading_ids(deps):
            await kicker.submit_upload(recording_id)
        tasks = [
            asyncio.create_task(receiver.listen(stop), name="jobs"),
            asyncio.create_task(_hold(lease, dispatcher, settings.broker_lock_ms / 3000), name="dispatcher-lease"),
            asyncio.create_task(deliverer.run(stop, may_run=may_deliver), name="webhook-delivery"),
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
