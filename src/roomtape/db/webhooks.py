"""The queries behind the webhooks API: an app's webhooks and what was delivered to them.

A delivery is one event sent to one URL; it may take several attempts (``WebhookDelivery`` rows with rising
``attempt``). Lists show each delivery by its latest attempt, and every attempt beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import OutboxEvent, Webhook, WebhookDelivery

__all__ = ["DeliveryFilter", "DeliveryPage", "app_webhooks", "delivery_page"]


async def app_webhooks(db: AsyncSession, app_id: str) -> list[Webhook]:
    """Every webhook of the app, oldest first."""
    rows = await db.scalars(select(Webhook).where(Webhook.app_id == app_id).order_by(Webhook.created_at, Webhook.id))
    return list(rows.all())


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    """Which of an app's deliveries a list shows; every field left at None filters nothing."""

    app_id: str
    """The app whose events were delivered."""
    webhook_id: str | None = None
    """Only to this registered webhook."""
    recording_id: str | None = None
    """Only events about this recording."""
    url: str | None = None
    """Only to this URL."""
    event: str | None = None
    """Only this event name."""
    status: str | None = None
    """Only deliveries whose latest attempt has this status."""


@dataclass(frozen=True, slots=True)
class DeliveryPage:
    """One page of deliveries."""

    rows: list[tuple[WebhookDelivery, OutboxEvent]]
    """Each delivery's latest attempt with its event, newest event first."""
    attempts: dict[tuple[str, str], list[WebhookDelivery]]
    """Every attempt of each ``(event id, url)`` on the page, in order."""
    total: int
    """Deliveries in the whole list."""


async def delivery_page(db: AsyncSession, where: DeliveryFilter, *, offset: int, limit: int) -> DeliveryPage:
    """One page of the deliveries ``where`` selects, each with every attempt."""
    last = (
        select(
            WebhookDelivery.event_id.label("event_id"),
            WebhookDelivery.url.label("url"),
            func.max(WebhookDelivery.attempt).label("attempt"),
        )
        .group_by(WebhookDelivery.event_id, WebhookDelivery.url)
        .subquery()
    )
    query = (
        select(WebhookDelivery, OutboxEvent)
        .join(
            last,
            (last.c.event_id == WebhookDelivery.event_id)
            & (last.c.url == WebhookDelivery.url)
            & (last.c.attempt == WebhookDelivery.attempt),
        )
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(OutboxEvent.app_id == where.app_id)
    )
    if where.webhook_id is not None:
        query = query.where(WebhookDelivery.webhook_id == where.webhook_id)
    if where.recording_id:
        query = query.where(OutboxEvent.recording_id == where.recording_id)
    if where.url:
        query = query.where(WebhookDelivery.url == where.url)
    if where.event:
        query = query.where(OutboxEvent.event == where.event)
    if where.status:
        query = query.where(WebhookDelivery.status == where.status)
    total = int(await db.scalar(select(func.count()).select_from(query.subquery())) or 0)
    rows = (
        await db.execute(
            query.order_by(OutboxEvent.created_at.desc(), OutboxEvent.id.desc(), WebhookDelivery.url)
            .offset(offset)
            .limit(limit)
        )
    ).all()
    attempts: dict[tuple[str, str], list[WebhookDelivery]] = {}
    if rows:
        every = await db.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.event_id.in_({d.event_id for d, _ in rows}))
            .order_by(WebhookDelivery.attempt)
        )
        for attempt in every:
            attempts.setdefault((attempt.event_id, attempt.url), []).append(attempt)
    return DeliveryPage(rows=[(d, ev) for d, ev in rows], attempts=attempts, total=total)
