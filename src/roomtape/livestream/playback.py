"""Signed, expiring HLS playback URLs: the token is a path segment, so the playlist's relative segment URLs work.

::

    {public_url}/v1/livestreams/{livestream_id}/hls/{exp}.{sig}/index.m3u8
    {public_url}/v1/livestreams/{livestream_id}/hls/{exp}.{sig}/seg00042.ts

``exp`` is Unix seconds, ``sig`` the base64url HMAC-SHA256 of ``{livestream_id}, newline, {exp}`` under
``derive_key(secret_key, "livestream-hls")`` (a key that signs nothing else). A player given the playlist's URL
fetches the segments next to it with the same token; a tampered or expired token is refused (403).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from roomtape.domain.tokens import ExpiringSigner

__all__ = ["HLS_FILE", "HlsSigner", "hls_path"]

HLS_FILE: Final = re.compile(r"^(index\.m3u8|seg\d{1,9}\.ts)$")
"""The files of a stream's HLS directory a playback URL may name."""


def hls_path(livestream_id: str, token: str, name: str = "index.m3u8") -> str:
    """The path of one HLS file of a livestream."""
    return f"/v1/livestreams/{livestream_id}/hls/{token}/{name}"


class HlsSigner:
    """Signs and checks the playback tokens of one server."""

    def __init__(self, secret_key: str, public_url: str) -> None:
        self._signer = ExpiringSigner(secret_key, "livestream-hls", "playback URL")
        self._base = public_url.rstrip("/")

    def token(self, livestream_id: str, expires_in: int, now: float | None = None) -> tuple[str, datetime]:
        """A token for the livestream valid ``expires_in`` seconds, and when it expires."""
        exp, sig = self._signer.sign((livestream_id,), expires_in, now)
        return f"{exp}.{sig}", datetime.fromtimestamp(exp, UTC)

    def playback_url(self, livestream_id: str, expires_in: int) -> str:
        """The playlist's signed URL."""
        token, _ = self.token(livestream_id, expires_in)
        return self._base + hls_path(livestream_id, token)

    def verify(self, livestream_id: str, token: str, now: float | None = None) -> None:
        """Raise ``Forbidden`` unless ``token`` signs the livestream and has not expired."""
        exp, _, sig = token.partition(".")
        self._signer.verify((livestream_id,), exp, sig, now)
