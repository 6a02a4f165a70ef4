"""The README's first command, as a newcomer runs it: ``make run`` into a venv without the test extra.

CI installs the test extra, so a runtime dependency that only the test extra brings in (wave 1: numpy) kept CI
green while ``make run`` died at import. This test builds a runtime-only venv from this checkout with the
Makefile's own ``run`` target, lets it serve on a free port, and then uses it the way the README says: the
printed demo credentials against the API, the front page in a browser's terms, every module of the package
and the example voice agent — all from that venv.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import free_port
from tests.e2e.make_run import INSTALL_TIMEOUT_S, MadeRun, make_run

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def made_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MadeRun]:
    tmp = tmp_path_factory.mktemp("make-run")
    with make_run(ROOT, tmp / "venv", tmp / "data", free_port()) as run:
        yield run


@pytest.mark.timeout(INSTALL_TIMEOUT_S + 120)
def test_make_run_serves_and_the_demo_credentials_work(made_run: MadeRun) -> None:
    creds = made_run.credentials
    assert set(creds) >= {"account_id", "app_id", "api_token"}
    api = f"{made_run.base_url}/accounts/{creds['account_id']}/realtime/kit/{creds['app_id']}"
    auth = {"Authorization": f"Bearer {creds['api_token']}"}
    r = httpx.post(f"{api}/meetings", json={"title": "First meeting"}, headers=auth, timeout=10)
    assert r.status_code == 201, r.text
    meeting_id = r.json()["data"]["id"]
    r = httpx.get(f"{api}/meetings", headers=auth, timeout=10)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == [meeting_id]
    assert httpx.get(f"{api}/meetings", headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401


@pytest.mark.timeout(120)
def test_the_front_page_loads_in_a_browser(made_run: MadeRun) -> None:
    r = httpx.get(f"{made_run.base_url}/", headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 200, r.text[:500]
    assert r.headers["content-type"].startswith("text/html")
    assert "roomtape" in r.text and 'href="/docs"' in r.text and 'href="/dashboard' in r.text
    assert httpx.get(f"{made_run.base_url}/static/dashboard.css").status_code == 200


@pytest.mark.timeout(300)
def test_the_runtime_venv_has_no_test_extra_and_imports_every_module(made_run: MadeRun) -> None:
    python = made_run.venv / "bin" / "python"
    probe = subprocess.run([python, "-c", "import pytest"], capture_output=True, text=True)
    assert probe.returncode != 0, "the runtime venv has pytest: it is not the newcomer's install"
    modules = sorted(m.name for m in pkgutil.walk_packages([str(ROOT / "src" / "roomtape")], "roomtape."))
    assert len(modules) > 50
    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    imported = subprocess.run([python, "-c", script, *modules], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr[-3000:]
    roomtape = made_run.venv / "bin" / "roomtape"
    for command in (["worker", "--help"], ["compose", "--help"], ["repair", str(made_run.data_dir)]):
        done = subprocess.run([roomtape, *command], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, f"roomtape {' '.join(command)}: {done.stderr[-2000:]}"


@pytest.mark.timeout(300)
def test_the_example_voice_agent_runs_from_the_runtime_venv(made_run: MadeRun) -> None:
    """The agent SDK and the example agent, against ``make run``'s server: it joins, records, hangs up."""
    done = subprocess.run(
        [
            made_run.venv / "bin" / "python",
            ROOT / "examples" / "voice_agent.py",
            "--url",
            made_run.base_url,
            "--credentials",
            made_run.data_dir / "demo-credentials.json",
            "--ice-host",
            "127.0.0.1",
            "--max-seconds",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        env={k: v for k, v in os.environ.items() if not k.startswith("ROOMTAPE_")},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert events[0]["event"] == "join_url"
    final = events[-1]
    assert final["event"] == "done" and final["session_id"], events
    assert final["composite_recording_id"] and final["track_recordings"], final


@pytest.mark.timeout(300)
def test_a_non_editable_install_serves_its_pages(made_run: MadeRun, tmp_path_factory: pytest.TempPathFactory) -> None:
    """``pip install .`` without extras (here with the uv that ``make run`` installed): templates, static files
    and migrations come from the installed package, not the checkout."""
    tmp = tmp_path_factory.mktemp("wheel")
    uv = made_run.venv / "bin" / "uv"
    subprocess.run([uv, "venv", "--quiet", tmp / "venv"], check=True, timeout=60)
    python = tmp / "venv" / "bin" / "python"
    subprocess.run([uv, "pip", "install", "--quiet", "--python", python, ROOT], check=True, timeout=240)
    where = subprocess.run(
        [python, "-c", "import roomtape, pathlib; print(pathlib.Path(roomtape.__file__).parent)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp,
    ).stdout.strip()
    assert not where.startswith(str(ROOT)), where  # the installed copy, not the checkout
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMTAPE_")}
    env.update(ROOMTAPE_PORT=str(port), ROOMTAPE_DATA_DIR=str(tmp / "data"))
    server = subprocess.Popen(
        [tmp / "venv" / "bin" / "roomtape", "serve"],
        env=env,
        cwd=tmp,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.2)
        html = {"Accept": "text/html"}
        assert httpx.get(f"{base}/", headers=html).status_code == 200
        for path in ("/static/dashboard.css", "/static/roomtape.js", "/dashboard/signin"):
            assert httpx.get(f"{base}{path}", headers=html).status_code == 200, path
    finally:
        server.terminate()
        server.wait(timeout=20)
