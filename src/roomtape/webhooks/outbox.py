"""The webhook outbox: events written in the same transaction as the change that caused them.

So a crash between the change and the delivery loses nothing. Delivery reads this table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import OutboxEvent


def emit(
    db: AsyncSession, app_id: str, event: str, payload: dict[str, Any], target_url: str | None = None
) -> OutboxEvent:
    """Queue ``event`` for the app's webhooks (and ``target_url`` if given).

    It is delivered once the caller's transaction commits.
    """
    row = OutboxEvent(app_id=app_id, event=event, payload=payload, target_url=target_url)
    db.add(row)
    return row
