"""Webhook signatures in the Standard Webhooks format (https://www.standardwebhooks.com).

Headers: ``webhook-id`` (the outbox event id: receivers dedupe on it), ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature`` = ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.

Which secret verifies which delivery:

- a **registered webhook** (RealtimeKit ``/webhooks``): its own secret, returned once as ``secret``
  (``whsec_…``, Standard Webhooks' form) when it is created and readable at ``GET …/webhooks/{id}/secret``;
- a **per-request URL** (VideoSDK ``webhookUrl``): the app's ``api_secret`` (what ``roomtape apps create``
  prints; the key is its UTF-8 bytes, ``whsec_<base64(api_secret)>`` for Standard Webhooks libraries). An
  app without one (created through the API) signs with ``derive_key(secret_key, "webhook:" + app_id)``.

Receivers verify with :func:`verify_webhook` (also ``roomtape.webhooks.verify``) or any Standard Webhooks
library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any

from roomtape.domain.tokens import derive_key

DEFAULT_TOLERANCE_SECS = 300
"""How far ``webhook-timestamp`` may be from the receiver's clock (Standard Webhooks' default)."""


class WebhookVerificationError(ValueError):
    """A delivery's signature, id or timestamp does not check out."""


def key_of(secret: str) -> bytes:
    """Signing key bytes of a webhook secret (``whsec_``-prefixed base64 is decoded, else UTF-8)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def standard_secret(key: bytes) -> str:
    """The ``whsec_`` form of a key, as Standard Webhooks libraries take it."""
    return "whsec_" + base64.b64encode(key).decode()


def app_key(secret_key: str, app_id: str) -> bytes:
    """Key for deliveries to per-request URLs of an app that has no ``api_secret``."""
    return derive_key(secret_key, "webhook:" + app_id)


def app_secret_key(api_secret: str) -> bytes:
    """Key for deliveries to an app's per-request URLs: its ``api_secret``'s UTF-8 bytes."""
    return key_of(api_secret)


def sign(key: bytes, event_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value."""
    mac = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def headers(key: bytes, event_id: str, event: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Every header of one signed delivery."""
    ts = int(timestamp if timestamp is not None else time.time())
    return {
        "content-type": "application/json",
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": sign(key, event_id, ts, body),
        "x-roomtape-event": event,
    }


def verify(
    key: bytes, event_id: str, timestamp: str, body: bytes, signature: str, tolerance: int = DEFAULT_TOLERANCE_SECS
) -> bool:
    """Whether one of the space-separated ``v1,`` signatures is valid and the timestamp is fresh."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    expected = sign(key, event_id, ts, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signature.split())


def verify_webhook(
    payload: bytes | str,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: int = DEFAULT_TOLERANCE_SECS,
) -> Any:
    """Check a roomtape webhook delivery and return its parsed JSON body.

    Example (any web framework; pass the raw body, not re-serialised JSON)::

        from roomtape.webhooks import verify

        event = verify(request_body_bytes, request.headers, "whsec_...")  # raises if forged or stale

    Args:
        payload: The request body exactly as received.
        headers: The request headers (any capitalisation): ``webhook-id``, ``webhook-timestamp`` and
            ``webhook-signature``.
        secret: A registered webhook's secret (``whsec_…``), or the app's ``api_secret`` for deliveries to a
            VideoSDK ``webhookUrl``.
        tolerance: Largest accepted distance in seconds between ``webhook-timestamp`` and now (replays).

    Returns:
        The decoded JSON body.

    Raises:
        WebhookVerificationError: A header is missing, the timestamp is too old or too new, or no
            signature matches.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    try:
        event_id = lowered["webhook-id"]
        timestamp = lowered["webhook-timestamp"]
        signature = lowered["webhook-signature"]
    except KeyError as exc:
        raise WebhookVerificationError(f"missing header {exc.args[0]}") from exc
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    try:
        ts = int(timestamp)
    except ValueError as exc:
        raise WebhookVerificationError("webhook-timestamp is not a number") from exc
    if abs(time.time() - ts) > tolerance:
        raise WebhookVerificationError("webhook-timestamp is too far from now")
    if not verify(key_of(secret), event_id, timestamp, body, signature, tolerance):
        raise WebhookVerificationError("no signature matches")
    return json.loads(body)
