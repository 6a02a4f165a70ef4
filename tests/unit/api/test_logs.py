from __future__ import annotations

import logging

from roomtape.api.logs import RedactSecrets, redact


def test_redact_hides_secret_query_values_only() -> None:
    line = '127.0.0.1 - "WebSocket /v1/meetings/m/ws?token=eyJ.abc.def&x=1" [accepted]'
    assert redact(line) == '127.0.0.1 - "WebSocket /v1/meetings/m/ws?token=[redacted]&x=1" [accepted]'
    assert redact("/downloads/a?exp=1&sig=deadbeef") == "/downloads/a?exp=1&sig=[redacted]"
    assert redact("/meetings?search=token") == "/meetings?search=token"


def test_filter_rewrites_record_arguments() -> None:
    record = logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s "%s"', ("ip", "/ws?token=secret"), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == 'ip "/ws?token=[redacted]"'
