"""Schemathesis against the served OpenAPI document: no 500s, no response that breaks the schema.

Bounded (a fixed seed and a few examples per operation) so it stays a test, not a fuzzing campaign; run
``schemathesis run`` by hand with more examples to search harder.
"""

from __future__ import annotations

import subprocess

import pytest
from tests.conftest import BIN, Server

MAX_EXAMPLES = 8
SEED = 20261121


# Every operation of the document, eight examples each, through one server process: several minutes on the
# shared 2 cores (272 s measured alone for SQLite before the VideoSDK rooms/sessions/recordings lists), so the
# per-test limit is the run's own 600 s budget plus set-up, not the suite's 300 s default.
@pytest.mark.timeout(900)
def test_schemathesis_finds_no_server_errors_or_schema_violations(server: Server) -> None:
    config = server.data_dir / "schemathesis.toml"
    config.write_text(
        "[parameters]\n"
        f'"path.account_id" = "{server.account_id}"\n'
        f'"path.app_id" = "{server.app_id}"\n'
        "[generation]\n"
        f"max-examples = {MAX_EXAMPLES}\n"
    )
    report = server.data_dir / "schemathesis-report"
    out = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{server.base_url}/openapi.json",
            "-H",
            f"Authorization: Bearer {server.api_token}",
            "--checks",
            "all",
            # What the issue asks of the API is no 5xx and no response outside its schema. "Schema-valid data
            # must be accepted" cannot hold by design here: the server validates beyond JSON Schema (a
            # storage host that resolves to a private address is refused by the outbound policy; PostgreSQL
            # refuses NUL in a query value) and answers those with a clear 400. Which of them the fuzzer hits
            # depends on the order of generated data, so it made the run pass or fail by chance.
            "--exclude-checks",
            "positive_data_acceptance",
            "--seed",
            str(SEED),
            "--workers",
            "1",
            "--report",
            "junit",
            "--report-dir",
            str(report),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=840,
    )
    summary = out.stdout[-6000:]
    assert out.returncode == 0, summary
    assert "FAILURES" not in out.stdout and "ERRORS" not in out.stdout, summary
    log = (server.data_dir / "server.log").read_text()
    assert "Traceback" not in log, log[-4000:]
