from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import standardwebhooks
from sqlalchemy import select
from tests.conftest import free_port
from tests.integration.webhooks.receiver import Receiver

from roomtape.config import Settings
from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import OutboxEvent, Webhook, WebhookDelivery
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.webhooks import signing
from roomtape.webhooks.delivery import Deliverer
from roomtape.webhooks.outbox import emit


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[WorkerDeps]:
    settings = Settings(
        data_dir=tmp_path,
        secret_key="k" * 40,
        webhook_backoff_base_secs=0.05,
        webhook_backoff_max_secs=0.2,
        webhook_max_attempts=1000,
    )
    d = await open_deps(settings)
    try:
        yield d
    finally:
        await d.engine.dispose()


async def _app_with_hook(deps: WorkerDeps, url: str, events: list[str]) -> tuple[str, str]:
    async with deps.sessions() as db:
        creds = await create_app_with_account(db, "hooks")
        secret = "hook-secret-" + "x" * 20
        db.add(Webhook(app_id=creds.app_id, name="h", url=url, events=events, secret=deps.box.seal(secret)))
        await db.commit()
    return creds.app_id, secret


async def test_receiver_down_gets_every_event_in_order_once(deps: WorkerDeps) -> None:
    port = free_port()
    receiver = Receiver(port)
    url = f"http://127.0.0.1:{port}/hook"
    app_id, secret = await _app_with_hook(deps, url, ["recording.statusUpdate", "meeting.started"])
    async with deps.sessions() as db:
        rows = [emit(db, app_id, "recording.statusUpdate", {"n": i}) for i in range(6)]
        emit(db, app_id, "meeting.ended", {"n": "not subscribed"})
        await db.commit()
        ids = [r.id for r in rows]

    deliverer = Deliverer(deps.sessions, deps.settings, deps.secret_key, deps.box, httpx.AsyncClient(timeout=2))
    stop = asyncio.Event()
    task = asyncio.create_task(deliverer.run(stop, poll_secs=0.05))
    await asyncio.sleep(1.0)  # receiver down: attempts fail and are logged
    async with deps.sessions() as db:
        failed = list(await db.scalars(select(WebhookDelivery).where(WebhookDelivery.status == "failed")))
    assert failed and all(r.event_id == ids[0] for r in failed)
    assert all(r.error and "Connect" in r.error for r in failed)

    await receiver.start()
    t0 = asyncio.get_running_loop().time()
    while len(receiver.received) < 6 and asyncio.get_running_loop().time() - t0 < 10:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    latency = asyncio.get_running_loop().time() - t0
    print(f"\nbacklog of 6 delivered {latency:.2f}s after the receiver came back")
    await asyncio.sleep(0.3)
    stop.set()
    await task
    await deliverer.aclose()
    await receiver.stop()

    assert [json.loads(r.body)["n"] for r in receiver.received] == list(range(6))
    assert [r.headers["webhook-id"] for r in receiver.received] == ids
    verifier = standardwebhooks.Webhook(signing.standard_secret(secret.encode()))
    for r in receiver.received:
        verifier.verify(r.body, r.headers)
        assert r.headers["x-roomtape-event"] == "recording.statusUpdate"
    async with deps.sessions() as db:
        pending = await db.scalars(select(OutboxEvent).where(OutboxEvent.delivered_at.is_(None)))
        assert list(pending) == []
        delivered = list(await db.scalars(select(WebhookDelivery).where(WebhookDelivery.status == "delivered")))
        assert sorted(r.event_id for r in delivered) == sorted(ids)
        assert all(r.response_status == 200 and r.response_body == "ok" for r in delivered)


async def test_target_url_is_signed_with_the_app_key_and_dies_after_max_attempts(deps: WorkerDeps) -> None:
    port = free_port()
    receiver = Receiver(port, status=500)
    await receiver.start()
    async with deps.sessions() as db:
        creds = await create_app_with_account(db, "t")
        ok = emit(db, creds.app_id, "recording-stopped", {"a": 1}, target_url=f"http://127.0.0.1:{port}/ok")
        await db.commit()
    deps.settings.webhook_max_attempts = 3
    deliverer = Deliverer(deps.sessions, deps.settings, deps.secret_key, deps.box, httpx.AsyncClient(timeout=2))
    for _ in range(40):
        await deliverer.run_once()
        await asyncio.sleep(0.05)
    async with deps.sessions() as db:
        rows = list(await db.scalars(select(WebhookDelivery).order_by(WebhookDelivery.attempt)))
        assert [r.status for r in rows] == ["failed", "failed", "dead"]
        assert rows[0].response_status == 500
        assert (await db.get(OutboxEvent, ok.id)).delivered_at is not None  # type: ignore[union-attr]

    receiver.status = 200
    async with deps.sessions() as db:
        ev = emit(db, creds.app_id, "recording-stopped", {"a": 2}, target_url=f"http://127.0.0.1:{port}/ok")
        await db.commit()
    await deliverer.run_once()
    await deliverer.aclose()
    await receiver.stop()
    got = receiver.received[-1]
    key = signing.app_key(deps.secret_key, creds.app_id)
    standardwebhooks.Webhook(signing.standard_secret(key)).verify(got.body, got.headers)
    assert got.headers["webhook-id"] == ev.id
