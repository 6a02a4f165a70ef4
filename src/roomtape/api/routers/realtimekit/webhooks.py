"""``/accounts/{account_id}/realtime/kit/{app_id}/webhooks``: where an app's events are delivered."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Depends
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.auth import app_of
from roomtape.api.context import ServerContext, get_context, get_db
from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.convert import webhook_out
from roomtape.api.schemas import Envelope
from roomtape.db.models import App, Webhook, utcnow
from roomtape.errors import NotFound

router = APIRouter(prefix="/accounts/{account_id}/realtime/kit/{app_id}/webhooks", tags=["webhooks"])


async def get_webhook(db: AsyncSession, app: App, webhook_id: str) -> Webhook:
    """The app's webhook, or 404."""
    hook = await db.get(Webhook, webhook_id)
    if hook is None or hook.app_id != app.id:
        raise NotFound("webhook not found")
    return hook


def _unique(events: list[str]) -> list[str]:
    return list(dict.fromkeys(events))


@router.post("", response_model=Envelope[s.WebhookOut], status_code=201, summary="Create a webhook")
async def create_webhook(
    body: s.WebhookCreate,
    app: App = Depends(app_of),
    db: AsyncSession = Depends(get_db),
    ctx: ServerContext = Depends(get_context),
) -> Envelope[s.WebhookOut]:
    """Register a URL for the listed events. Deliveries are signed with a per-webhook secret."""
    hook = Webhook(
        app_id=app.id,
        name=body.name,
        url=str(body.url),
        events=_unique(list(body.events)),
        enabled=body.enabled,
        secret=ctx.box.seal(secrets.token_urlsafe(32)),
    )
    db.add(hook)
    await db.commit()
    return Envelope(data=webhook_out(hook))


@router.get("", response_model=s.WebhookList, summary="List webhooks")
async def list_webhooks(app: App = Depends(app_of), db: AsyncSession = Depends(get_db)) -> s.WebhookList:
    """Every webhook of the app, oldest first."""
    rows = (
        await db.scalars(select(Webhook).where(Webhook.app_id == app.id).order_by(Webhook.created_at, Webhook.id))
    ).all()
    return s.WebhookList(data=[webhook_out(w) for w in rows])


@router.get("/{webhook_id}", response_model=Envelope[s.WebhookOut], summary="Get a webhook")
async def get_webhook_by_id(
    webhook_id: str, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.WebhookOut]:
    """One webhook."""
    return Envelope(data=webhook_out(await get_webhook(db, app, webhook_id)))


@router.put("/{webhook_id}", response_model=Envelope[s.WebhookOut], summary="Replace a webhook")
async def replace_webhook(
    webhook_id: str, body: s.WebhookCreate, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.WebhookOut]:
    """Replace name, URL, events and enabled flag."""
    hook = await get_webhook(db, app, webhook_id)
    hook.name, hook.url, hook.events, hook.enabled = (
        body.name,
        str(body.url),
        _unique(list(body.events)),
        body.enabled,
    )
    hook.updated_at = utcnow()
    await db.commit()
    return Envelope(data=webhook_out(hook))


@router.patch("/{webhook_id}", response_model=Envelope[s.WebhookOut], summary="Edit a webhook")
async def edit_webhook(
    webhook_id: str, body: s.WebhookUpdate, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.WebhookOut]:
    """Change the fields given."""
    hook = await get_webhook(db, app, webhook_id)
    for name in body.model_fields_set:
        value = getattr(body, name)
        if value is None:
            continue  # null means "leave as it is": every webhook field is required
        if name == "url":
            value = str(value)
        elif name == "events":
            value = _unique(list(value))
        setattr(hook, name, value)
    hook.updated_at = utcnow()
    await db.commit()
    return Envelope(data=webhook_out(hook))


@router.delete("/{webhook_id}", response_model=Envelope[s.WebhookOut], summary="Delete a webhook")
async def delete_webhook(
    webhook_id: str, app: App = Depends(app_of), db: AsyncSession = Depends(get_db)
) -> Envelope[s.WebhookOut]:
    """Delete a webhook; returns it as it was."""
    hook = await get_webhook(db, app, webhook_id)
    data = webhook_out(hook)
    await db.delete(hook)
    await db.commit()
    return Envelope(data=data)
