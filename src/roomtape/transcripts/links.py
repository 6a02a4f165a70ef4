"""Expiring, HMAC-signed transcript download links (RealtimeKit's ``transcript_download_url``).

A link names the session (or recording), the format and an expiry, and carries a signature over all three::

    {public_url}/v1/sessions/{id}/transcript?format=vtt&exp=<unix seconds>&sig=<base64url HMAC-SHA256>

A link that is not valid or has expired is refused like a missing credential (401).
The key is ``derive_key(secret_key, "transcript-url")``: it signs nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from typing import Literal
from urllib.parse import quote

from roomtape.domain.tokens import derive_key
from roomtape.errors import Unauthenticated

Scope = Literal["sessions", "recordings"]


class TranscriptLinks:
    """Signs and checks transcript download links of one server."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self._key = derive_key(secret_key, "transcript-url")
        self._base = public_url.rstrip("/")

    def _sig(self, scope: Scope, object_id: str, fmt: str, exp: int) -> str:
        mac = hmac.new(self._key, f"{scope}\n{object_id}\n{fmt}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(
        self, scope: Scope, object_id: str, fmt: str, expires_in: int, now: float | None = None
    ) -> tuple[str, datetime]:
        """A link to the transcript of ``object_id`` in ``fmt``, and when it expires."""
        exp = int(now if now is not None else time.time()) + expires_in
        url = (
            f"{self._base}/v1/{scope}/{quote(object_id, safe='')}/transcript"
            f"?format={quote(fmt)}&exp={exp}&sig={self._sig(scope, object_id, fmt, exp)}"
        )
        return url, datetime.fromtimestamp(exp, UTC)

    def verify(self, scope: Scope, object_id: str, fmt: str, exp: str, sig: str, now: float | None = None) -> None:
        """Raise ``Unauthenticated`` unless ``sig`` signs the link and it has not expired."""
        try:
            expires = int(exp)
        except ValueError as exc:
            raise Unauthenticated("transcript link is not valid") from exc
        if not hmac.compare_digest(self._sig(scope, object_id, fmt, expires), sig):
            raise Unauthenticated("transcript link is not valid")
        if expires < (now if now is not None else time.time()):
            raise Unauthenticated("transcript link has expired")
