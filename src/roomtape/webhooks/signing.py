"""Webhook signatures in the Standard Webhooks format (https://www.standardwebhooks.com).

Headers: ``webhook-id`` (the outbox event id: receivers dedupe on it), ``webhook-timestamp`` (Unix
seconds) and ``webhook-signature`` = ``v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>``.

The key of a registered webhook is the UTF-8 bytes of its secret; in Standard Webhooks' notation that is the
secret ``whsec_<base64(secret)>`` (see :func:`standard_secret`). Deliveries to a per-request URL (VideoSDK
``webhookUrl``) are signed with the app's key: until ``App.api_secret`` lands (migration 0003) that is
``derive_key(secret_key, "webhook:" + app_id)``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

from roomtape.domain.tokens import derive_key


def key_of(secret: str) -> bytes:
    """Signing key bytes of a webhook secret (``whsec_``-prefixed base64 is decoded, else UTF-8)."""
    if secret.startswith("whsec_"):
        return base64.b64decode(secret.removeprefix("whsec_"))
    return secret.encode()


def standard_secret(key: bytes) -> str:
    """The ``whsec_`` form of a key, as Standard Webhooks libraries take it."""
    return "whsec_" + base64.b64encode(key).decode()


def app_key(secret_key: str, app_id: str) -> bytes:
    """Key for deliveries to an app's per-request URLs."""
    return derive_key(secret_key, "webhook:" + app_id)


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


def verify(key: bytes, event_id: str, timestamp: str, body: bytes, signature: str, tolerance: int = 300) -> bool:
    """Whether one of the space-separated ``v1,`` signatures is valid and the timestamp is fresh."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs(time.time() - ts) > tolerance:
        return False
    expected = sign(key, event_id, ts, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signature.split())
