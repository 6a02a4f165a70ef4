from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator
from datetime import timedelta
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
from roomtape.webhooks import WebhookVerificationError, signing, verify
from roomtape.webhooks.delivery import Deliverer, backoff, retry_span
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
    """An app without an api_secret (created through the API) signs per-request URLs with a derived key."""
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


async def test_target_url_is_signed_with_the_apps_api_secret(deps: WorkerDeps) -> None:
    """VideoSDK webhookUrl deliveries verify with the api_secret `roomtape apps create` printed."""
    port = free_port()
    receiver = Receiver(port)
    await receiver.start()
    async with deps.sessions() as db:
        creds = await create_app_with_account(db, "vsdk", box=deps.box)
        ev = emit(db, creds.app_id, "participant-track-recording-started", {"x": 1}, f"http://127.0.0.1:{port}/v")
        await db.commit()
    assert creds.api_secret
    deliverer = Deliverer(deps.sessions, deps.settings, deps.secret_key, deps.box)
    await deliverer.run_once()
    await deliverer.aclose()
    await receiver.stop()
    got = receiver.received[0]
    assert got.headers["webhook-id"] == ev.id
    assert verify(got.body, got.headers, creds.api_secret) == {"x": 1}
    std = standardwebhooks.Webhook(signing.standard_secret(creds.api_secret.encode()))
    assert std.verify(got.body, got.headers) == {"x": 1}
    with pytest.raises(WebhookVerificationError):
        verify(got.body, got.headers, signing.standard_secret(signing.app_key(deps.secret_key, creds.app_id)))


async def test_delivery_refuses_a_private_address_at_connect_time(tmp_path: Path) -> None:
    """A target that passed registration but now resolves to loopback (DNS rebinding) is refused when
    connecting: the attempt is logged with the reason, the receiver sees nothing."""
    port = free_port()
    receiver = Receiver(port)
    await receiver.start()
    strict = Settings(data_dir=tmp_path, secret_key="k" * 40, outbound_allow_cidrs="", webhook_max_attempts=2)
    deps = await open_deps(strict)
    try:
        async with deps.sessions() as db:
            creds = await create_app_with_account(db, "rebind")
            for host in ("localhost", "127.0.0.1"):
                emit(db, creds.app_id, "recording-stopped", {"h": host}, target_url=f"http://{host}:{port}/x")
            await db.commit()
        deliverer = Deliverer(deps.sessions, deps.settings, deps.secret_key, deps.box)
        await deliverer.run_once()
        await deliverer.aclose()
        async with deps.sessions() as db:
            rows = list(await db.scalars(select(WebhookDelivery)))
        assert len(rows) == 2 and receiver.received == []
        for row in rows:
            assert row.status == "failed" and row.response_status is None
            assert row.error and "refused" in row.error and "127.0.0.1" in row.error, row.error

        # The same events with loopback allowed are delivered: the refusal came from the policy.
        allowed = strict.model_copy(update={"outbound_allow_cidrs": "127.0.0.0/8"})
        async with deps.sessions() as db:
            for row in await db.scalars(select(WebhookDelivery)):
                row.next_attempt_at = None
            await db.commit()
        deliverer = Deliverer(deps.sessions, allowed, deps.secret_key, deps.box)
        await deliverer.run_once()
        await deliverer.aclose()
        assert sorted(json.loads(r.body)["h"] for r in receiver.received) == ["127.0.0.1", "localhost"]
    finally:
        await receiver.stop()
        await deps.engine.dispose()


def test_retry_schedule_is_exponential_and_lasts_over_a_day() -> None:
    settings = Settings()
    delays = [backoff(settings, n).total_seconds() for n in range(1, settings.webhook_max_attempts)]
    assert delays[:5] == [1, 2, 4, 8, 16]
    assert all(b == min(2 * a, settings.webhook_backoff_max_secs) for a, b in itertools.pairwise(delays))
    span = retry_span(settings)
    assert span == timedelta(seconds=sum(delays))
    assert span >= timedelta(hours=24), span
    hours = span.total_seconds() / 3600
    print(f"\ndefault webhook retry span: {hours:.2f} h over {settings.webhook_max_attempts} attempts")
