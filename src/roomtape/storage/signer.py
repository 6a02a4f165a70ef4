"""HMAC-signed, expiring roomtape download URLs, for backends that cannot presign (local, SFTP).

A URL names a *scope* (where the object lives: ``default`` for the server's storage, or ``rec-<id>`` for
a recording with its own ``storage_config``), the key, an expiry and a signature over all three::

    {public_url}/downloads/{scope}/{key}?exp=<unix seconds>&sig=<base64url HMAC-SHA256>

The signing key is ``derive_key(secret_key, "download-url")``: it signs nothing else.
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import quote

from roomtape.domain.tokens import ExpiringSigner
from roomtape.storage.base import SignedUrl, check_key

DOWNLOAD_PREFIX = "/downloads"


class DownloadSigner:
    """Signs and checks download URLs of one server."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self._signer = ExpiringSigner(secret_key, "download-url", "download URL")
        self._base = public_url.rstrip("/")

    def sign(self, scope: str, key: str, expires_in: int, now: float | None = None) -> SignedUrl:
        """A URL for ``key`` in ``scope`` valid for ``expires_in`` seconds."""
        check_key(key)
        exp, sig = self._signer.sign((scope, key), expires_in, now)
        path = f"{DOWNLOAD_PREFIX}/{quote(scope, safe='')}/{quote(key)}"
        return SignedUrl(url=f"{self._base}{path}?exp={exp}&sig={sig}", expires_at=datetime.fromtimestamp(exp, UTC))

    def verify(self, scope: str, key: str, exp: str, sig: str, now: float | None = None) -> None:
        """Raise ``Forbidden`` unless ``sig`` signs (scope, key, exp) and ``exp`` is in the future."""
        self._signer.verify((scope, key), exp, sig, now)
