"""The webhook outbox: events written in the same transaction as the change that caused them.

So a crash between the change and the delivery loses nothing. Delivery reads this table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import OutboxEvent


def recording_of(payload: dict[str, Any]) -> str | None:
    """The recording id a webhook body names: RealtimeKit's ``recording.id`` or VideoSDK's ``data.recordingId``."""
    for holder, field in ((payload.get("recording"), "id"), (payload.get("data"), "recordingId")):
        if isinstance(holder, dict) and isinstance(holder.get(field), str):
            return str(holder[field])
    return None


def emit(
    db: AsyncSession,
    app_id: str,
    event: str,
    payload: dict[str, Any],
    target_url: str | None = None,
    recording_id: str | None = None,
) -> OutboxEvent:
    """Queue ``event`` for the app's webhooks (and ``target_url`` if given).

    It is delivered once the caller's transaction commits.

    Args:
        db: The session of the state change the event reports.
        app_id: The app whose webhooks receive it.
        event: The event name (RealtimeKit's ``event`` or VideoSDK's ``webhookType``).
        payload: The JSON body.
        target_url: A per-request URL (VideoSDK ``webhookUrl``) it also goes to.
        recording_id: The recording it is about (taken from the payload when it names one), so its
            deliveries can be listed per recording.

    Returns:
        The outbox row (added to ``db``, not committed).
    """
    row = OutboxEvent(
        app_id=app_id,
        event=event,
        payload=payload,
        target_url=target_url,
        recording_id=recording_id or recording_of(payload),
    )
    db.add(row)
    return row
