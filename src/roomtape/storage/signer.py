"""HMAC-signed, expiring roomtape download URLs, for backends that cannot presign (local, SFTP).

A URL names a *scope* (where the object lives: ``default`` for the server's storage, or ``rec-<id>`` for
a recording with its own ``storage_config``), the key, an expiry and a signature over all three::

    {public_url}/downloads/{scope}/{key}?exp=<unix seconds>&sig=<base64url HMAC-SHA256>

The signing key is ``derive_key(secret_key, "download-url")``: it signs nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime
from urllib.parse import quote

from roomtape.domain.tokens import derive_key
from roomtape.errors import Forbidden
from roomtape.storage.base import SignedUrl, check_key

DOWNLOAD_PREFIX = "/downloads"


class DownloadSigner:
    """Signs and checks download URLs of one server."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self._key = derive_key(secret_key, "download-url")
        self._base = public_url.rstrip("/")

    def _sig(self, scope: str, key: str, exp: int) -> str:
        mac = hmac.new(self._key, f"{scope}\n{key}\n{exp}".encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, scope: str, key: str, expires_in: int, now: float | None = None) -> SignedUrl:
        """A URL for ``key`` in ``scope`` valid for ``expires_in`` seconds."""
        check_key(key)
        exp = int(now if now is not None else time.time()) + expires_in
        path = f"{DOWNLOAD_PREFIX}/{quote(scope, safe='')}/{quote(key)}"
        url = f"{self._base}{path}?exp={exp}&sig={self._sig(scope, key, exp)}"
        return SignedUrl(url=url, expires_at=datetime.fromtimestamp(exp, UTC))

    def verify(self, scope: str, key: str, exp: str, sig: str, now: float | None = None) -> None:
        """Raise ``Forbidden`` unless ``sig`` signs (scope, key, exp) and ``exp`` is in the future."""
        try:
            expires = int(exp)
        except ValueError as exc:
            raise Forbidden("download URL is not valid") from exc
        if not hmac.compare_digest(self._sig(scope, key, expires), sig):
            raise Forbidden("download URL is not valid")
        if expires < (now if now is not None else time.time()):
            raise Forbidden("download URL has expired")
