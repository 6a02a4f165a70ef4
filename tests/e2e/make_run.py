"""``make run`` as a newcomer runs it, in a subprocess: used by ``test_make_run.py`` and ``bench/newcomer.py``.

The environment is this process's minus the test venv and every ``ROOMTAPE_*`` setting, so what serves is the
Makefile's own install into the given venv (runtime dependencies only), listening on the given port.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

# A cold pip cache may take minutes to fill the venv (aiortc, av, boto3, google-cloud-storage ...).
INSTALL_TIMEOUT_S = 840


@dataclass
class MadeRun:
    """``make run`` serving: its venv, data dir, URL, what it printed, and the demo credentials."""

    venv: Path
    data_dir: Path
    base_url: str
    output: str
    credentials: dict[str, str]
    log: list[str]
    """Every line ``make run`` printed so far (it keeps growing while the server runs)."""


def runtime_env(data_dir: Path, port: int) -> dict[str, str]:
    """This process's environment without the test venv and ``ROOMTAPE_*`` settings, plus where to serve."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ROOMTAPE_", "VIRTUAL_ENV", "PYTHON"))}
    test_bin = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != test_bin)
    env.update(ROOMTAPE_PORT=str(port), ROOMTAPE_HOST="127.0.0.1", ROOMTAPE_DATA_DIR=str(data_dir))
    return env


def read_until_serving(proc: subprocess.Popen[str], lines: list[str], deadline: float) -> str:
    """``make run``'s output up to the "serving on" line (pip's output and the credentials come first).

    A thread keeps reading the pipe into ``lines`` for as long as the process lives, so the server never
    blocks on a full pipe and a test can look at everything it logged."""
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.extend(iter(stdout.readline, "")), daemon=True).start()
    while time.monotonic() < deadline:
        if any("roomtape: serving on" in line for line in list(lines)):
            return "".join(lines)
        if proc.poll() is not None:
            time.sleep(0.5)  # let the thread read what is left
            break
        time.sleep(0.2)
    raise AssertionError(f"make run did not reach 'serving on' (exit {proc.poll()}):\n{''.join(lines)[-6000:]}")


def demo_credentials(output: str) -> dict[str, str]:
    match = re.search(r"created a demo app.*?:\n(\{.*?\n\})", output, re.S)
    assert match, f"make run printed no demo credentials:\n{output[-3000:]}"
    creds: dict[str, str] = json.loads(match.group(1))
    return creds


@contextlib.contextmanager
def make_run(
    checkout: Path,
    venv: Path,
    data_dir: Path,
    port: int,
    extra_env: dict[str, str] | None = None,
    make_args: tuple[str, ...] = (),
) -> Iterator[MadeRun]:
    """Run ``make -C checkout run VENV=venv [make_args]`` until it serves and answers; stop it (and make) on
    exit."""
    env = runtime_env(data_dir, port) | (extra_env or {})
    proc = subprocess.Popen(
        ["make", "--no-print-directory", "-C", str(checkout), "run", f"VENV={venv}", *make_args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make and the server it starts stop together (killpg)
    )
    lines: list[str] = []
    try:
        output = read_until_serving(proc, lines, time.monotonic() + INSTALL_TIMEOUT_S)
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base_url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server printed 'serving on' but never answered"
                time.sleep(0.2)
        yield MadeRun(venv, data_dir, base_url, output, demo_credentials(output), lines)
    finally:
        with contextlib.suppress(ProcessLookupError):  # make already exited (the install or the server failed)
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
