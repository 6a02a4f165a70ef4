"""Encryption at rest for write-only secrets (storage credentials, webhook secrets).

Fernet (AES-128-CBC + HMAC-SHA256) from ``cryptography``, keyed from the server's secret key.
"""

from __future__ import annotations

import base64
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

from roomtape.domain.tokens import derive_key
from roomtape.errors import RoomtapeError

SECRET_FIELDS = frozenset({"access_key", "secret", "password", "private_key"})
"""Fields of a ``storage_config`` that clients may write but never read back."""

_ENC_PREFIX = "enc:"


class SecretBox:
    """Encrypts and decrypts short strings with a key derived from the server's secret key."""

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive_key(secret_key, "secretbox")))

    def seal(self, plaintext: str) -> str:
        """Encrypt ``plaintext``; the result is safe to store."""
        return _ENC_PREFIX + self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str:
        """Decrypt a value made by :meth:`seal`."""
        if not sealed.startswith(_ENC_PREFIX):
            raise RoomtapeError("value is not sealed")
        try:
            return self._fernet.decrypt(sealed[len(_ENC_PREFIX) :].encode()).decode()
        except InvalidToken as exc:
            raise RoomtapeError("sealed value cannot be decrypted with this server's key") from exc

    def seal_fields(self, config: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``config`` with every secret field encrypted."""
        return {k: (self.seal(str(v)) if k in SECRET_FIELDS and v is not None else v) for k, v in config.items()}

    def open_fields(self, config: dict[str, Any]) -> dict[str, Any]:
        """Return a copy of ``config`` with every secret field decrypted (for the storage layer only)."""
        return {k: (self.open(v) if k in SECRET_FIELDS and isinstance(v, str) else v) for k, v in config.items()}


def redact(config: dict[str, Any]) -> dict[str, Any]:
    """A copy of a ``storage_config`` without its secret fields, as the API returns it."""
    return {k: v for k, v in config.items() if k not in SECRET_FIELDS}
