"""Delivery of the webhook outbox: every undelivered event to every subscribed target, signed, retried.

Targets of an event: each enabled ``Webhook`` of its app whose ``events`` list names it (or ``*``), signed
with that webhook's secret, plus the event's ``target_url`` (VideoSDK ``webhookUrl``), signed with the app's
``api_secret`` (see :mod:`roomtape.webhooks.signing`). Each attempt is a ``WebhookDelivery`` row (status
``delivered``, ``failed`` with ``next_attempt_at``, or ``dead`` after ``webhook_max_attempts``), with the
response status and the first ``RESPONSE_BODY_LIMIT`` characters of the body, or the error; they are listed
by ``GET …/webhooks/deliveries`` and ``GET …/webhooks/{id}/deliveries``.

Retries: exponential backoff (:func:`backoff`); with the defaults (22 attempts, 1 s doubling, capped at 3 h)
an event is retried for about 25.5 hours (:func:`retry_span`) before it is ``dead``.

Connections go through :func:`roomtape.webhooks.outbound.guarded_client`: an address the outbound policy
does not allow (private, loopback, link-local) is refused at connect time and logged as a failed attempt.

Guarantees: **at-least-once, in order per target**. An event is not sent to a URL before every earlier
event of the same app for that URL is delivered or dead, so a receiver that is down gets the backlog in
order once it is back. A crash after the receiver answered but before the attempt row is committed sends
that event again: receivers dedupe on ``webhook-id`` (the event id). Only one deliverer may run per
database: the server (in-process jobs) or the worker holding the dispatcher lease (distributed jobs).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape.config import Settings
from roomtape.db.models import App, OutboxEvent, Webhook, WebhookDelivery, utcnow
from roomtape.domain.secretbox import SecretBox
from roomtape.errors import RoomtapeError
from roomtape.webhooks import signing
from roomtape.webhooks.outbound import guarded_client

log = logging.getLogger(__name__)

RESPONSE_BODY_LIMIT = 2000
BATCH = 200
FINISHED = ("delivered", "dead")


@dataclass(frozen=True)
class Target:
    """One URL an event goes to, with its signing key."""

    url: str
    key: bytes
    webhook_id: str | None


def backoff(settings: Settings, attempt: int) -> timedelta:
    """Delay after failed attempt number ``attempt`` (1-based): base·2^(attempt-1), capped."""
    secs = min(settings.webhook_backoff_max_secs, settings.webhook_backoff_base_secs * 2 ** (attempt - 1))
    return timedelta(seconds=secs)


def retry_span(settings: Settings) -> timedelta:
    """How long after its first attempt an event is last tried: the sum of every backoff delay."""
    return sum((backoff(settings, n) for n in range(1, settings.webhook_max_attempts)), timedelta())


class Deliverer:
    """Reads the outbox and delivers; :meth:`run_once` is one pass, :meth:`run` loops until stopped."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        secret_key: str,
        box: SecretBox,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._secret_key = secret_key
        self._box = box
        self._client = client or guarded_client(settings)
        self._wake = asyncio.Event()
        self._app_keys: dict[str, bytes] = {}

    def wake(self) -> None:
        """Make a waiting :meth:`run` start a pass now (after new events were committed)."""
        self._wake.set()

    async def _targets(self, db: AsyncSession, event: OutboxEvent, hooks: dict[str, list[Webhook]]) -> list[Target]:
        if event.app_id not in hooks:
            rows = await db.scalars(select(Webhook).where(Webhook.app_id == event.app_id, Webhook.enabled.is_(True)))
            hooks[event.app_id] = list(rows)
        out = [
            Target(h.url, signing.key_of(self._box.open(h.secret)), h.id)
            for h in hooks[event.app_id]
            if event.event in h.events or "*" in h.events
        ]
        if event.target_url:
            out.append(Target(event.target_url, await self._app_key(db, event.app_id), None))
        return out

    async def _app_key(self, db: AsyncSession, app_id: str) -> bytes:
        """The key of per-request URLs: the app's ``api_secret`` (derived from the server key if it has none)."""
        if app_id not in self._app_keys:
            sealed = await db.scalar(select(App.api_secret).where(App.id == app_id))
            try:
                secret = self._box.open(sealed) if sealed else None
            except RoomtapeError:
                log.warning("app %s: api_secret cannot be opened; signing with the derived key", app_id)
                secret = None
            self._app_keys[app_id] = (
                signing.app_secret_key(secret) if secret else signing.app_key(self._secret_key, app_id)
            )
        return self._app_keys[app_id]

    async def run_once(self) -> int:
        """One pass over the undelivered events; returns how many attempts it made."""
        attempts = 0
        now = utcnow()
        async with self._sessions() as db:
            events = list(
                await db.scalars(
                    select(OutboxEvent)
                    .where(OutboxEvent.delivered_at.is_(None))
                    .order_by(OutboxEvent.created_at, OutboxEvent.id)
                    .limit(BATCH)
                )
            )
            if not events:
                return 0
            rows = await db.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.event_id.in_([e.id for e in events]))
                .order_by(WebhookDelivery.attempt)
            )
            last: dict[tuple[str, str], WebhookDelivery] = {}
            for row in rows:
                last[(row.event_id, row.url)] = row
            hooks: dict[str, list[Webhook]] = {}
            blocked: set[tuple[str, str]] = set()  # (app, url) with an earlier event not finished
            for event in events:
                finished = True
                for target in await self._targets(db, event, hooks):
                    lane = (event.app_id, target.url)
                    prev = last.get((event.id, target.url))
                    if prev is not None and prev.status in FINISHED:
                        continue
                    finished = False
                    if lane in blocked:
                        continue
                    if prev is not None and prev.next_attempt_at is not None and prev.next_attempt_at > now:
                        blocked.add(lane)
                        continue
                    row = await self._attempt(event, target, (prev.attempt + 1) if prev else 1)
                    db.add(row)
                    await db.commit()
                    attempts += 1
                    last[(event.id, target.url)] = row
                    if row.status not in FINISHED:
                        blocked.add(lane)  # later events of this lane wait for this one
                if finished or all(
                    (done := last.get((event.id, t.url))) is not None and done.status in FINISHED
                    for t in await self._targets(db, event, hooks)
                ):
                    event.delivered_at = utcnow()
                    await db.commit()
        return attempts

    async def _attempt(self, event: OutboxEvent, target: Target, attempt: int) -> WebhookDelivery:
        body = json.dumps(event.payload, separators=(",", ":"), default=str).encode()
        row = WebhookDelivery(event_id=event.id, webhook_id=target.webhook_id, url=target.url, attempt=attempt)
        try:
            resp = await self._client.post(
                target.url, content=body, headers=signing.headers(target.key, event.id, event.event, body)
            )
            row.response_status = resp.status_code
            row.response_body = resp.text[:RESPONSE_BODY_LIMIT]
            ok = 200 <= resp.status_code < 300
            row.error = None if ok else f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            ok = False
            row.error = f"{type(exc).__name__}: {exc}"[:RESPONSE_BODY_LIMIT]
        if ok:
            row.status = "delivered"
        elif attempt >= self._settings.webhook_max_attempts:
            row.status = "dead"
            log.warning("webhook %s to %s is dead after %d attempts", event.id, target.url, attempt)
        else:
            row.status = "failed"
            row.next_attempt_at = utcnow() + backoff(self._settings, attempt)
        return row

    async def run(
        self, stop: asyncio.Event, poll_secs: float = 0.5, may_run: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        """Deliver until ``stop`` is set; ``may_run`` (a lease check) gates each pass."""
        while not stop.is_set():
            try:
                if may_run is None or await may_run():
                    while await self.run_once():
                        if stop.is_set():
                            return
            except Exception:
                log.exception("webhook delivery pass failed; retrying")
            self._wake.clear()
            waiter = asyncio.ensure_future(self._wake.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, timeout=poll_secs, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()
