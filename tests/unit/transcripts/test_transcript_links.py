from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from roomtape.errors import Unauthenticated
from roomtape.transcripts.links import TranscriptLinks


def test_signed_link_verifies_until_it_expires_and_binds_scope_id_and_format() -> None:
    links = TranscriptLinks("k" * 32, "http://rt.example/")
    url, expiry = links.sign("sessions", "s1", "vtt", 60, now=1000)
    parts = urlsplit(url)
    assert parts.path == "/v1/sessions/s1/transcript" and expiry.timestamp() == 1060
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    links.verify("sessions", "s1", "vtt", q["exp"], q["sig"], now=1059)
    for scope, obj, fmt, now in [
        ("recordings", "s1", "vtt", 0),
        ("sessions", "s2", "vtt", 0),
        ("sessions", "s1", "srt", 0),
    ]:
        with pytest.raises(Unauthenticated):
            links.verify(scope, obj, fmt, q["exp"], q["sig"], now=now)  # type: ignore[arg-type]
    with pytest.raises(Unauthenticated, match="expired"):
        links.verify("sessions", "s1", "vtt", q["exp"], q["sig"], now=1061)
    with pytest.raises(Unauthenticated):
        links.verify("sessions", "s1", "vtt", "soon", q["sig"])
    with pytest.raises(Unauthenticated):
        TranscriptLinks("x" * 32, "http://rt.example").verify("sessions", "s1", "vtt", q["exp"], q["sig"], now=1000)
