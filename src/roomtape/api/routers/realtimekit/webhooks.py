"""``/accounts/{account_id}/realtime/kit/{app_id}/webhooks``: where an app's events are delivered.

Besides RealtimeKit's CRUD: the signing secret (``secret`` in the create response, ``GET …/{id}/secret``),
and every delivery attempt (``GET …/{id}/deliveries``; ``GET …/deliveries`` for all of the app's targets,
VideoSDK ``webhookUrl`` ones included, filterable by ``recording_id``, ``url``, ``event`` and ``status``).
Webhook URLs whose host resolves to a non-public address are refused (see ``roomtape.webhooks.outbound``).
Webhook ids in paths are UUIDs (``{webhook_id:uuid}``), so ``/webhooks/deliveries`` is never taken for one.
"""

from __future__ import annotations

import base64
import secrets
import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import ServerContext, get_context, get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import Page, webhook_out
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.api.schemas import Envelope, ListEnvelope, paging
from roomtape.db.models import App, Webhook, utcnow
from roomtape.db.webhooks import DeliveryFilter, app_webhooks, delivery_page
from roomtape.errors import NotFound
from roomtape.webhooks import signing
from roomtape.webhooks.outbound import check_url

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/webhooks", tags=["webhooks"])


class WebhookCreated(s.WebhookOut):
    """A new webhook, with the secret that signs its deliveries."""

    secret: str = Field(description="Standard Webhooks secret (``whsec_…``) to verify deliveries with")


class WebhookSecret(BaseModel):
    """The signing secret of a webhook."""

    secret: str = Field(description="Standard Webhooks secret (``whsec_…``) to verify deliveries with")


class DeliveryAttempt(BaseModel):
    """One attempt to deliver an event to one URL."""

    attempt: int = Field(description="1 for the first try")
    status: Literal["pending", "delivered", "failed", "dead"] = Field(
        description="delivered; failed (retried at next_attempt_at); dead (no more retries)"
    )
    response_status: int | None = Field(None, description="HTTP status the receiver answered")
    response_body: str | None = Field(None, description="The first 2000 characters of the receiver's answer")
    error: str | None = Field(None, description="Why the attempt failed (connection error, HTTP status)")
    attempted_at: datetime
    next_attempt_at: datetime | None = Field(None, description="When the next attempt is due (failed only)")


class Delivery(BaseModel):
    """One event's delivery to one URL: its state and every attempt, oldest first."""

    event_id: str = Field(description="The ``webhook-id`` header of every attempt")
    event: str
    recording_id: str | None = None
    webhook_id: str | None = Field(None, description="None for a per-request URL (VideoSDK ``webhookUrl``)")
    url: str
    status: Literal["pending", "delivered", "failed", "dead"] = Field(
        description="pending: not tried yet (waits for earlier events of the same URL)"
    )
    created_at: datetime = Field(description="When the event happened (was written to the outbox)")
    attempts: list[DeliveryAttempt]


async def get_webhook(db: AsyncSession, app: App, webhook_id: str | uuid.UUID) -> Webhook:
    """The app's webhook, or 404."""
    hook = await db.get(Webhook, str(webhook_id))
    if hook is None or hook.app_id != app.id:
        raise NotFound("webhook not found")
    return hook


def _unique(events: list[str]) -> list[str]:
    return list(dict.fromkeys(events))


def _secret_of(ctx: ServerContext, hook: Webhook) -> str:
    return signing.standard_secret(signing.key_of(ctx.box.open(hook.secret)))


@router.post("", response_model=Envelope[WebhookCreated], status_code=201, summary="Create a webhook")
async def create_webhook(
    body: s.WebhookCreate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[WebhookCreated]:
    """Register a URL for the listed events. Deliveries are signed with the per-webhook ``secret`` returned here.

    400 if the URL's host resolves to a private, loopback or link-local address (unless the server allows it).
    """
    await check_url(ctx.settings, str(body.url))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    hook = Webhook(
        app_id=app.id,
        name=body.name,
        url=str(body.url),
        events=_unique(list(body.events)),
        enabled=body.enabled,
        secret=ctx.box.seal(secret),
    )
    db.add(hook)
    await db.commit()
    return Envelope(data=WebhookCreated(**webhook_out(hook).model_dump(), secret=secret))


@router.get("", response_model=s.WebhookList, summary="List webhooks")
async def list_webhooks(app: App = Depends(app_of), db: AsyncSession = Depends(get_db)) -> s.WebhookList:
    """Every webhook of the app, oldest first."""
    return s.WebhookList(data=[webhook_out(w) for w in await app_webhooks(db, app.id)])


DeliveryStatus = Literal["delivered", "failed", "dead"]


async def _deliveries(
    db: AsyncSession,
    app: App,
    page: Page,
    *,
    webhook: Webhook | None = None,
    recording_id: str | None = None,
    url: str | None = None,
    event: str | None = None,
    status: DeliveryStatus | None = None,
) -> ListEnvelope[Delivery]:
    """The app's deliveries (one per event and URL tried), newest event first, each with every attempt."""
    where = DeliveryFilter(
        app_id=app.id,
        webhook_id=webhook.id if webhook is not None else None,
        recording_id=recording_id,
        url=url,
        event=event,
        status=status,
    )
    found = await delivery_page(db, where, offset=page.offset, limit=page.per_page)
    attempts, total = found.attempts, found.total
    data = [
        Delivery(
            event_id=ev.id,
            event=ev.event,
            recording_id=ev.recording_id,
            webhook_id=d.webhook_id,
            url=d.url,
            status=d.status,
            created_at=ev.created_at,
            attempts=[
                DeliveryAttempt(
                    attempt=a.attempt,
                    status=a.status,
                    response_status=a.response_status,
                    response_body=a.response_body,
                    error=a.error,
                    attempted_at=a.created_at,
                    next_attempt_at=a.next_attempt_at,
                )
                for a in attempts.get((d.event_id, d.url), [])
            ],
        )
        for d, ev in found.rows
    ]
    return ListEnvelope(data=data, paging=paging(total, page.offset, len(data)))


@router.get("/deliveries", response_model=ListEnvelope[Delivery], summary="List webhook deliveries")
async def list_deliveries(
    page: Page = Depends(),
    recording_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    url: Annotated[str | None, Query(max_length=2048, pattern=NO_NUL)] = None,
    event: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    status: DeliveryStatus | None = None,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> ListEnvelope[Delivery]:
    """Every delivery of the app's events, newest first, each with every attempt.

    Deliveries to registered webhooks and to per-request URLs (VideoSDK ``webhookUrl``); per attempt the
    status code, the start of the answer, the error, when it was tried and when it is tried next. Filter by
    ``recording_id``, ``url``, ``event``, ``status``.
    """
    return await _deliveries(db, app, page, recording_id=recording_id, url=url, event=event, status=status)


@router.get(
    "/{webhook_id:uuid}/deliveries", response_model=ListEnvelope[Delivery], summary="List a webhook's deliveries"
)
async def list_webhook_deliveries(
    webhook_id: uuid.UUID,
    page: Page = Depends(),
    recording_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    event: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    status: DeliveryStatus | None = None,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
) -> ListEnvelope[Delivery]:
    """The webhook's deliveries, newest event first, each with every attempt (see "List webhook deliveries")."""
    hook = await get_webhook(db, app, webhook_id)
    return await _deliveries(db, app, page, webhook=hook, recording_id=recording_id, event=event, status=status)


@router.get("/{webhook_id:uuid}/secret", response_model=Envelope[WebhookSecret], summary="Get a webhook's secret")
async def get_webhook_secret(
    webhook_id: uuid.UUID,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[WebhookSecret]:
    """The secret that signs the webhook's deliveries (Standard Webhooks ``whsec_…`` form)."""
    hook = await get_webhook(db, app, webhook_id)
    return Envelope(data=WebhookSecret(secret=_secret_of(ctx, hook)))


@router.get("/{webhook_id:uuid}", response_model=Envelope[s.WebhookOut], summary="Get a webhook")
async def get_webhook_by_id(
    webhook_id: uuid.UUID, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.WebhookOut]:
    """One webhook."""
    return Envelope(data=webhook_out(await get_webhook(db, app, webhook_id)))


@router.put("/{webhook_id:uuid}", response_model=Envelope[s.WebhookOut], summary="Replace a webhook")
async def replace_webhook(
    webhook_id: uuid.UUID,
    body: s.WebhookCreate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.WebhookOut]:
    """Replace name, URL, events and enabled flag (the URL is checked as at creation)."""
    hook = await get_webhook(db, app, webhook_id)
    await check_url(ctx.settings, str(body.url))
    hook.name, hook.url, hook.events, hook.enabled = (
        body.name,
        str(body.url),
        _unique(list(body.events)),
        body.enabled,
    )
    hook.updated_at = utcnow()
    await db.commit()
    return Envelope(data=webhook_out(hook))


@router.patch("/{webhook_id:uuid}", response_model=Envelope[s.WebhookOut], summary="Edit a webhook")
async def edit_webhook(
    webhook_id: uuid.UUID,
    body: s.WebhookUpdate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.WebhookOut]:
    """Change the fields given (a new URL is checked as at creation)."""
    hook = await get_webhook(db, app, webhook_id)
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None:
            continue  # null means "leave as it is": every webhook field is required
        if name == "url":
            value = str(value)
            await check_url(ctx.settings, value)
        elif name == "events":
            value = _unique(list(value))
        setattr(hook, name, value)
    hook.updated_at = utcnow()
    await db.commit()
    return Envelope(data=webhook_out(hook))


@router.delete("/{webhook_id:uuid}", response_model=Envelope[s.WebhookOut], summary="Delete a webhook")
async def delete_webhook(
    webhook_id: uuid.UUID, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.WebhookOut]:
    """Delete a webhook; returns it as it was."""
    hook = await get_webhook(db, app, webhook_id)
    data = webhook_out(hook)
    await db.delete(hook)
    await db.commit()
    return Envelope(data=data)
