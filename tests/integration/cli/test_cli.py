"""The ``roomtape`` console script, run as a user would: a subprocess with ROOMTAPE_* settings."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from tests.conftest import BIN, free_port


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "roomtape"), *args], env=env, capture_output=True, text=True, timeout=60)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROOMTAPE_")}
    return {**clean, "ROOMTAPE_DATA_DIR": str(tmp_path / "data")}


@pytest.mark.parametrize(
    "args",
    [[], ["serve"], ["signin-link"], ["migrate"], ["apps"], ["apps", "create"], ["apps", "list"]],
    ids=lambda a: " ".join(a) or "roomtape",
)
def test_help_everywhere(args: list[str], env: dict[str, str]) -> None:
    out = run(*args, "--help", env=env)
    assert out.returncode == 0, out.stderr
    assert "Usage: roomtape" in out.stdout


def test_apps_create_prints_one_json_object_and_nothing_else(env: dict[str, str], tmp_path: Path) -> None:
    out = run("apps", "create", "--name", "acme", env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    creds = json.loads(lines[0])
    assert set(creds) >= {"account_id", "app_id", "api_token"}
    assert creds["api_token"].startswith("rt_")
    # The token is stored hashed: the plaintext is nowhere in the database file.
    db = (tmp_path / "data" / "roomtape.db").read_bytes()
    assert creds["api_token"].encode() not in db
    assert (tmp_path / "data" / "secret.key").stat().st_mode & 0o077 == 0

    second = json.loads(run("apps", "create", "--name", "second", "--account-id", creds["account_id"], env=env).stdout)
    assert second["account_id"] == creds["account_id"] and second["app_id"] != creds["app_id"]
    bad = run("apps", "create", "--name", "x", "--account-id", "no-such-account", env=env)
    assert bad.returncode != 0 and "no account" in bad.stderr and bad.stdout == ""

    listed = run("apps", "list", "--json", env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["app_id"] for r in rows} == {creds["app_id"], second["app_id"]}
    table = run("apps", "list", env=env).stdout
    assert "acme" in table and creds["app_id"] in table


def test_migrate_on_sqlite_and_postgres(env: dict[str, str], pg_database_url: str) -> None:
    for extra in ({}, {"ROOMTAPE_DATABASE_URL": pg_database_url}):
        out = run("migrate", env={**env, **extra})
        assert out.returncode == 0, out.stderr
        assert "database at revision" in out.stderr
        again = run("migrate", env={**env, **extra})  # idempotent
        assert again.returncode == 0, again.stderr


def test_config_file_and_env(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = tmp_path / "roomtape.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "from-toml"}"\n')
    env_with_file = {k: v for k, v in env.items() if k != "ROOMTAPE_DATA_DIR"} | {"ROOMTAPE_CONFIG": str(cfg)}
    assert run("apps", "create", "--name", "t", env=env_with_file).returncode == 0
    assert (tmp_path / "from-toml" / "roomtape.db").is_file()
    # The environment wins over the file.
    env_both = env_with_file | {"ROOMTAPE_DATA_DIR": str(tmp_path / "from-env")}
    assert run("apps", "create", "--name", "t", env=env_both).returncode == 0
    assert (tmp_path / "from-env" / "roomtape.db").is_file()


def start_serve(env: dict[str, str], data_dir: Path) -> tuple[subprocess.Popen[str], int, str]:
    """Start ``roomtape serve``; return it, its port and what it printed up to "serving on"."""
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "roomtape"), "serve", "--port", str(port), "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    printed = ""
    deadline = time.monotonic() + 30
    while "serving on" not in printed and time.monotonic() < deadline:
        printed += proc.stdout.readline()
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, port, printed


def stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_first_start_creates_demo_app_and_prints_credentials(env: dict[str, str], tmp_path: Path) -> None:
    proc, port, printed = start_serve(env, tmp_path / "srv")
    try:
        start = printed.index("{")
        creds = json.loads(printed[start : printed.index("}", start) + 1])
        assert set(creds) >= {"account_id", "app_id", "api_token"}
        assert f"http://127.0.0.1:{port}" in printed
        url = f"http://127.0.0.1:{port}/accounts/{creds['account_id']}/realtime/kit/apps"
        r = httpx.get(url, headers={"Authorization": f"Bearer {creds['api_token']}"})
        assert r.status_code == 200 and r.json()["data"][0]["id"] == creds["app_id"]
        first_link = signin_link(printed, port)
    finally:
        stop(proc)
    # Second start: no new app, and it says where the first one's credentials are; a new sign-in link.
    proc, port, printed = start_serve(env, tmp_path / "srv")
    try:
        assert "demo-credentials.json" in printed and '"api_token"' not in printed
        saved = json.loads((tmp_path / "srv" / "demo-credentials.json").read_text())
        assert saved == creds
        assert signin_link(printed, port) != first_link
    finally:
        stop(proc)


def signin_link(printed: str, port: int) -> str:
    """The one sign-in link ``serve`` printed, checked to go to this server's sign-in page with a secret."""
    links = [line.strip() for line in printed.splitlines() if "/dashboard/signin/link#" in line]
    assert len(links) == 1, printed
    assert links[0].startswith(f"http://127.0.0.1:{port}/dashboard/signin/link#") and len(links[0].split("#")[1]) >= 40
    return links[0]


def test_signin_link_needs_the_demo_app_and_no_demo_prints_none(env: dict[str, str], tmp_path: Path) -> None:
    # No demo app in this data dir: the command says so, and how to sign in instead.
    assert run("apps", "create", "--name", "mine", env=env).returncode == 0
    out = run("signin-link", env=env)
    assert out.returncode != 0 and "no demo app" in out.stderr and out.stdout == ""
    proc = subprocess.Popen(
        [str(BIN / "roomtape"), "serve", "--no-demo", "--port", str(free_port())],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        printed = ""
        while "serving on" not in printed:
            line = proc.stdout.readline()
            assert line, printed
            printed += line
        assert "/dashboard/signin/link" not in printed
    finally:
        stop(proc)
    bad = run("signin-link", "--ttl", "0", env=env)
    assert bad.returncode == 2 and "--ttl" in bad.stderr
