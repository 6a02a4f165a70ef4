"""Webhooks: the outbox, delivery, signing — and :func:`verify` for receivers.

``verify(payload, headers, secret)`` checks a delivery's Standard Webhooks signature and timestamp and returns
the JSON body (see :func:`roomtape.webhooks.signing.verify_webhook`).
"""

from roomtape.webhooks.signing import WebhookVerificationError
from roomtape.webhooks.signing import verify_webhook as verify

__all__ = ["WebhookVerificationError", "verify"]
