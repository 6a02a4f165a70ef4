from __future__ import annotations

import base64
import hashlib
import hmac
import time
from pathlib import Path

import pytest

from roomtape.config import Settings
from roomtape.domain.secretbox import SecretBox, redact
from roomtape.domain.tokens import (
    ExpiringSigner,
    derive_key,
    hash_api_token,
    looks_like_jwt,
    new_api_token,
    sign_participant_token,
    verify_participant_token,
)
from roomtape.errors import Forbidden, RoomtapeError, Unauthenticated

KEY = "k" * 48


def test_api_tokens_are_random_and_hashed() -> None:
    a, b = new_api_token(), new_api_token()
    assert a != b and a.startswith("rt_") and len(a) > 40
    assert hash_api_token(a) == hash_api_token(a) != hash_api_token(b)
    assert a not in hash_api_token(a)
    assert not looks_like_jwt(a)


def test_participant_token_round_trip_and_refusals() -> None:
    token = sign_participant_token(KEY, app_id="app", meeting_id="m", participant_id="p", version=3, ttl_secs=60)
    assert looks_like_jwt(token)
    claims = verify_participant_token(KEY, token)
    assert (claims.app_id, claims.meeting_id, claims.participant_id, claims.version) == ("app", "m", "p", 3)
    assert claims.expires_at - time.time() == pytest.approx(60, abs=2)
    with pytest.raises(Unauthenticated, match="not valid"):
        verify_participant_token("another key" * 4, token)
    with pytest.raises(Unauthenticated, match="not valid"):
        verify_participant_token(KEY, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"))
    expired = sign_participant_token(
        KEY, app_id="a", meeting_id="m", participant_id="p", version=0, ttl_secs=60, now=time.time() - 3600
    )
    with pytest.raises(Unauthenticated, match="expired"):
        verify_participant_token(KEY, expired)


def test_secretbox_seals_only_secret_fields() -> None:
    box = SecretBox(KEY)
    # "." is outside the urlsafe-base64 alphabet of the ciphertext, so the plaintext can only show up in
    # the sealed value by leaking, never by chance (a two-letter key once matched random ciphertext).
    config = {"type": "aws", "bucket": "b", "access_key": "AK.plain", "secret": "S.plain", "password": None}
    sealed = box.seal_fields(config)
    assert sealed["bucket"] == "b" and sealed["password"] is None
    assert "AK.plain" not in sealed["access_key"] and "S.plain" not in sealed["secret"]
    assert box.open_fields(sealed) == config
    assert redact(sealed) == {"type": "aws", "bucket": "b"}
    with pytest.raises(RoomtapeError):
        SecretBox("other" * 10).open(sealed["secret"])


def test_settings_defaults_and_generated_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ROOMTAPE_DATABASE_URL", "ROOMTAPE_PUBLIC_URL", "ROOMTAPE_SECRET_KEY", "ROOMTAPE_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROOMTAPE_DATA_DIR", str(tmp_path))
    s = Settings()
    assert s.resolved_database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'roomtape.db'}"
    assert s.resolved_public_url == "http://127.0.0.1:8080"
    key = s.resolved_secret_key()
    assert len(key) >= 48 and Settings().resolved_secret_key() == key  # kept in the data dir
    monkeypatch.setenv("ROOMTAPE_SECRET_KEY", "given")
    monkeypatch.setenv("ROOMTAPE_PUBLIC_URL", "https://rt.example/")
    monkeypatch.setenv("ROOMTAPE_DATABASE_URL", "postgresql+asyncpg://u@h/db")
    s = Settings()
    assert s.resolved_secret_key() == "given" and s.resolved_public_url == "https://rt.example"
    assert s.resolved_database_url == "postgresql+asyncpg://u@h/db"


def test_expiring_signer_refuses_other_fields_a_bad_expiry_and_an_expired_one() -> None:
    signer = ExpiringSigner("secret", "download-url", "download URL")
    exp, sig = signer.sign(("default", "a/b.webm"), 60, now=1000)
    assert exp == 1060
    signer.verify(("default", "a/b.webm"), str(exp), sig, now=1059)
    # The message is the fields and the expiry, newline-separated: URLs signed before the refactor stay valid.
    mac = hmac.new(derive_key("secret", "download-url"), b"default\na/b.webm\n1060", hashlib.sha256).digest()
    assert sig == base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    for fields, exp_text, message in [
        (("default", "a/c.webm"), str(exp), "download URL is not valid"),
        (("default", "a/b.webm"), "10x", "download URL is not valid"),
        (("default", "a/b.webm"), str(exp + 1), "download URL is not valid"),
    ]:
        with pytest.raises(Forbidden, match=message):
            signer.verify(fields, exp_text, sig, now=1059)
    with pytest.raises(Forbidden, match="download URL has expired"):
        signer.verify(("default", "a/b.webm"), str(exp), sig, now=1061)
    # Another purpose's key signs differently.
    assert ExpiringSigner("secret", "livestream-hls", "playback URL").signature(("default", "a/b.webm"), exp) != sig
