"""API tokens (opaque, stored hashed) and participant join tokens (signed JWTs).

API tokens are 256-bit random strings, so a plain SHA-256 is a sound way to store them: nothing a slow
password hash protects against (guessing a low-entropy secret) applies.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt

from roomtape.errors import Forbidden, Unauthenticated

API_TOKEN_PREFIX = "rt_"
PARTICIPANT_TOKEN_TYPE = "participant"
_JWT_ALG = "HS256"


def new_api_token() -> str:
    """Return a new random API token (shown once, then only its hash is kept)."""
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_api_token(token: str) -> str:
    """The stored form of an API token."""
    return hashlib.sha256(token.encode()).hexdigest()


def derive_key(secret_key: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, derived from the server's secret key (keys never cross uses)."""
    return hmac.new(secret_key.encode(), f"roomtape:{purpose}".encode(), hashlib.sha256).digest()


class ExpiringSigner:
    """HMAC-SHA256 signatures over some fields and an expiry, for URLs that carry their own proof.

    One instance signs for one purpose (its key is ``derive_key(secret_key, purpose)``); the signature is the
    base64url (unpadded) MAC of the fields and the expiry, newline-separated. ``what`` names the URL in the
    ``Forbidden`` messages ("download URL", "playback URL").
    """

    def __init__(self, secret_key: str, purpose: str, what: str) -> None:
        self._key = derive_key(secret_key, purpose)
        self._what = what

    def signature(self, fields: tuple[str, ...], exp: int) -> str:
        """The signature of ``fields`` valid until ``exp`` (Unix seconds)."""
        mac = hmac.new(self._key, "\n".join((*fields, str(exp))).encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()

    def sign(self, fields: tuple[str, ...], expires_in: int, now: float | None = None) -> tuple[int, str]:
        """The expiry ``expires_in`` seconds from now and the signature that goes with it."""
        exp = int(now if now is not None else time.time()) + expires_in
        return exp, self.signature(fields, exp)

    def verify(self, fields: tuple[str, ...], exp: str, sig: str, now: float | None = None) -> None:
        """Raise ``Forbidden`` unless ``sig`` signs ``fields`` with expiry ``exp`` and that is in the future."""
        try:
            expires = int(exp)
        except ValueError:
            raise Forbidden(f"{self._what} is not valid") from None
        if not hmac.compare_digest(self.signature(fields, expires), sig):
            raise Forbidden(f"{self._what} is not valid")
        if expires < (now if now is not None else time.time()):
            raise Forbidden(f"{self._what} has expired")


@dataclass(frozen=True, slots=True)
class ParticipantClaims:
    """What a participant join token proves."""

    app_id: str
    meeting_id: str
    participant_id: str
    version: int
    expires_at: int


def looks_like_jwt(token: str) -> bool:
    """Whether ``token`` has the three-part shape of a JWT."""
    return token.count(".") == 2 and not token.startswith(API_TOKEN_PREFIX)


def sign_participant_token(
    secret_key: str,
    *,
    app_id: str,
    meeting_id: str,
    participant_id: str,
    version: int,
    ttl_secs: int,
    now: float | None = None,
) -> str:
    """Sign a join token carrying the meeting, the participant and an expiry."""
    issued = int(now if now is not None else time.time())
    claims = {
        "typ": PARTICIPANT_TOKEN_TYPE,
        "app": app_id,
        "mtg": meeting_id,
        "sub": participant_id,
        "ver": version,
        "iat": issued,
        "exp": issued + ttl_secs,
    }
    return jwt.encode(claims, derive_key(secret_key, "participant-token"), algorithm=_JWT_ALG)


def verify_participant_token(secret_key: str, token: str) -> ParticipantClaims:
    """Check a join token's signature and expiry and return its claims.

    Raises:
        Unauthenticated: the token is malformed, forged or expired.
    """
    try:
        claims = jwt.decode(
            token,
            derive_key(secret_key, "participant-token"),
            algorithms=[_JWT_ALG],
            options={"require": ["exp", "sub", "mtg", "app", "typ"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("participant token has expired") from exc
    except jwt.PyJWTError as exc:
        raise Unauthenticated("participant token is not valid") from exc
    if claims.get("typ") != PARTICIPANT_TOKEN_TYPE:
        raise Unauthenticated("not a participant token")
    return ParticipantClaims(
        app_id=str(claims["app"]),
        meeting_id=str(claims["mtg"]),
        participant_id=str(claims["sub"]),
        version=int(claims.get("ver", 0)),
        expires_at=int(claims["exp"]),
    )
