"""Webhooks through a real server: the signing secret, every delivery attempt listed by the API, and
deliveries verified with roomtape's helper and with the ``standardwebhooks`` package."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks
from tests.conftest import Server, database_url_for, free_port, start_server, stop_server
from tests.integration.webhooks.receiver import Receiver

from roomtape.config import Settings
from roomtape.jobs.deps import open_deps
from roomtape.webhooks import WebhookVerificationError, signing, verify
from roomtape.webhooks.outbox import emit


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp(f"hooks-{request.param}")
    server = start_server(
        tmp,
        database_url_for(request.param, tmp, request),
        {"ROOMTAPE_WEBHOOK_BACKOFF_BASE_SECS": "0.2", "ROOMTAPE_WEBHOOK_BACKOFF_MAX_SECS": "0.4"},
    )
    try:
        yield server
    finally:
        stop_server(server)


async def _emit(srv: Server, app_id: str, events: list[tuple[str, dict[str, Any], str | None]]) -> list[str]:
    """Write events to the server's outbox, as a state change in the server would."""
    deps = await open_deps(Settings(data_dir=srv.data_dir, database_url=srv.database_url))
    try:
        async with deps.sessions() as db:
            rows = [emit(db, app_id, name, payload, target_url=url) for name, payload, url in events]
            await db.commit()
            return [r.id for r in rows]
    finally:
        await deps.engine.dispose()


async def _until(predicate: Any, within: float = 90.0) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def test_every_attempt_is_listed_and_deliveries_verify(srv: Server) -> None:
    app = srv.new_app("deliveries")
    base = f"{srv.base_url}/accounts/{app['account_id']}/realtime/kit/{app['app_id']}"
    headers = {"Authorization": f"Bearer {app['api_token']}"}
    port = free_port()
    receiver = Receiver(port, status=503)  # up, but failing: attempts get a status code
    await receiver.start()
    hook_url, adhoc_url = f"http://127.0.0.1:{port}/hook", f"http://127.0.0.1:{port}/adhoc"
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        created = await client.post(
            f"{base}/webhooks", json={"name": "h", "url": hook_url, "events": ["recording.statusUpdate"]}
        )
        assert created.status_code == 201, created.text
        hook = created.json()["data"]
        secret = hook["secret"]
        assert secret.startswith("whsec_")
        got = await client.get(f"{base}/webhooks/{hook['id']}/secret")
        assert got.json()["data"]["secret"] == secret
        assert "secret" not in (await client.get(f"{base}/webhooks/{hook['id']}")).json()["data"]

        rec_id = "6f1c2d3e-0000-4000-8000-000000000001"
        ids = await _emit(
            srv,
            app["app_id"],
            [
                ("recording.statusUpdate", {"event": "recording.statusUpdate", "recording": {"id": rec_id}}, None),
                (
                    "recording-stopped",
                    {"webhookType": "recording-stopped", "data": {"recordingId": rec_id}},
                    adhoc_url,
                ),
                ("recording.statusUpdate", {"event": "recording.statusUpdate", "recording": {"id": "other"}}, None),
            ],
        )

        async def listed(path: str, **params: Any) -> dict[str, Any]:
            r = await client.get(f"{base}/webhooks/{path}", params=params)
            assert r.status_code == 200, r.text
            body: dict[str, Any] = r.json()
            return body

        # The receiver answers 503: attempts fail, are logged with the answer, and are retried.
        async def failed_twice() -> bool:
            page = await listed(f"{hook['id']}/deliveries")
            return bool(page["data"]) and any(len(d["attempts"]) >= 2 for d in page["data"])

        for _ in range(900):
            if await failed_twice():
                break
            await asyncio.sleep(0.1)
        page = await listed(f"{hook['id']}/deliveries")
        first = next(d for d in page["data"] if d["event_id"] == ids[0])
        assert first["status"] == "failed" and first["webhook_id"] == hook["id"] and first["url"] == hook_url
        assert first["recording_id"] == rec_id
        attempt = first["attempts"][0]
        assert attempt["attempt"] == 1 and attempt["status"] == "failed"
        assert attempt["response_status"] == 503 and attempt["response_body"] == "ok"
        assert attempt["error"] == "HTTP 503" and attempt["next_attempt_at"] and attempt["attempted_at"]
        assert [a["attempt"] for a in first["attempts"]] == list(range(1, len(first["attempts"]) + 1))
        # in order per target: the later event to the same URL has not been tried while the first fails
        assert all(d["event_id"] != ids[2] for d in page["data"])

        receiver.status = 200
        await _until(lambda: len(receiver.received) >= 3)
        page = await listed(f"{hook['id']}/deliveries")
        assert page["paging"]["total_count"] == 2
        assert [d["event_id"] for d in page["data"]] == [ids[2], ids[0]]  # newest first
        assert all(d["status"] == "delivered" for d in page["data"])
        done = page["data"][1]["attempts"]
        assert done[-1]["status"] == "delivered" and done[-1]["response_status"] == 200
        assert done[-1]["next_attempt_at"] is None and all(a["status"] == "failed" for a in done[:-1])

        # Per-request URLs (VideoSDK webhookUrl) are listed too, by recording or by URL.
        by_rec = await listed("deliveries", recording_id=rec_id)
        assert {(d["url"], d["webhook_id"]) for d in by_rec["data"]} == {(hook_url, hook["id"]), (adhoc_url, None)}
        by_url = await listed("deliveries", url=adhoc_url)
        assert [d["event_id"] for d in by_url["data"]] == [ids[1]]
        assert by_url["data"][0]["attempts"][-1]["status"] == "delivered"
        assert (await listed("deliveries", status="dead"))["data"] == []
        assert (await listed("deliveries", event="recording-stopped"))["paging"]["total_count"] == 1
        other = srv.new_app("someone-else")
        intruder = await client.get(
            f"{srv.base_url}/accounts/{other['account_id']}/realtime/kit/{app['app_id']}/webhooks/deliveries",
            headers={"Authorization": f"Bearer {other['api_token']}"},
        )
        assert intruder.status_code == 404
    await receiver.stop()

    # Registered webhook: its secret. Per-request URL: the app's api_secret. Both with both verifiers.
    for r in receiver.received:
        key = secret if r.path == "/hook" else app["api_secret"]
        body = verify(r.body, r.headers, key)
        assert body == json.loads(r.body)
        std = secret if r.path == "/hook" else signing.standard_secret(app["api_secret"].encode())
        assert standardwebhooks.Webhook(std).verify(r.body, r.headers) == body
    adhoc = [r for r in receiver.received if r.path == "/adhoc"]
    assert len(adhoc) == 1 and adhoc[0].headers["webhook-id"] == ids[1]
    sample = adhoc[0]
    with pytest.raises(WebhookVerificationError):
        verify(sample.body.replace(b"recording", b"recordinG"), sample.headers, app["api_secret"])
    with pytest.raises(WebhookVerificationError):
        verify(sample.body, sample.headers, secret)  # the other secret
    with pytest.raises(WebhookVerificationError):
        verify(sample.body, {**sample.headers, "webhook-timestamp": str(int(time.time()) - 3600)}, app["api_secret"])
    with pytest.raises(WebhookVerificationError):
        verify(sample.body, {k: v for k, v in sample.headers.items() if k != "webhook-signature"}, secret)


def test_webhook_urls_to_private_addresses_are_refused(tmp_path: Path) -> None:
    """With the default policy (no allow-list), registration refuses non-public hosts with 400."""
    server = start_server(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'roomtape.db'}", {"ROOMTAPE_OUTBOUND_ALLOW_CIDRS": ""}
    )
    try:
        base = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}"
        with httpx.Client(headers={"Authorization": f"Bearer {server.api_token}"}, timeout=60) as client:
            body = {"name": "h", "events": ["recording.statusUpdate"]}
            for url in (
                "http://127.0.0.1:9000/h",
                "http://localhost/h",
                "http://10.1.2.3/h",
                "http://192.168.0.10:8080/h",
                "http://169.254.169.254/latest/meta-data",
                "http://[::1]/h",
                "http://[::ffff:127.0.0.1]/h",
                "http://0.0.0.0/h",
                "http://100.64.0.1/h",
            ):
                r = client.post(f"{base}/webhooks", json={**body, "url": url})
                assert r.status_code == 400, (url, r.text)
                assert "private, loopback or link-local" in r.json()["error"]["message"]
            ok = client.post(f"{base}/webhooks", json={**body, "url": "http://93.184.216.34/h"})
            assert ok.status_code == 201, ok.text
            hook_id = ok.json()["data"]["id"]
            r = client.patch(f"{base}/webhooks/{hook_id}", json={"url": "http://127.0.0.1/h"})
            assert r.status_code == 400
            r = client.put(f"{base}/webhooks/{hook_id}", json={**body, "url": "http://10.0.0.1/h"})
            assert r.status_code == 400
            assert client.get(f"{base}/webhooks/{hook_id}").json()["data"]["url"] == "http://93.184.216.34/h"
            # VideoSDK's per-request webhookUrl, checked before anything else of the request
            vsdk = {"Authorization": server.api_token}
            room = client.post(f"{base}/meetings", json={"title": "t"}).json()["data"]["id"]
            r = client.post(
                f"{server.base_url}/v2/recordings/start",
                json={"roomId": room, "webhookUrl": "http://127.0.0.1:1/h"},
                headers=vsdk,
            )
            assert r.status_code == 400 and "webhookUrl" in r.text, r.text
            r = client.post(
                f"{server.base_url}/v2/recordings/participant/track/start",
                json={"roomId": room, "participantId": "p", "kind": "audio", "webhookUrl": "http://10.9.9.9/"},
                headers=vsdk,
            )
            assert r.status_code == 400 and "webhookUrl" in r.text, r.text
    finally:
        stop_server(server)
