"""A newcomer's first recording, timed: clone → ``make run`` serving → first composite playable.

For each cache state (``warm``: this user's pip and uv caches as they are; ``cold``: an empty ``PIP_CACHE_DIR``
and ``UV_CACHE_DIR``, so every wheel is downloaded again) it:

1. ``git clone``\\ s this checkout's HEAD into a temporary directory;
2. runs ``make run`` there exactly as the README says (a fresh ``.venv``, runtime dependencies only) on a free
   port, until it prints "serving on" and answers;
3. with the printed demo credentials and the Cloudflare SDK, creates a meeting and two participants, opens
   both join links in Chromium with fake camera and microphone (Debian's ``/usr/bin/chromium``), starts a
   meeting recording, records ``--record-seconds``, stops it and waits for ``UPLOADED``;
4. downloads the composite and decodes it with PyAV (video frames and audio samples present).

It prints and writes (``--out``) the time of each phase and the total, and the warm run's ratio against a
baseline run in the same process tree: ``warm-pip``, the same path with ``make run INSTALLER=pip`` (pip instead
of uv). The goal in issue 12: under 5 minutes from an empty cache on the 2-core machine, under 60 s warm. ``make
run`` bootstraps uv with pip and installs with uv; in ``cold`` pip may still take uv's wheel from the machine's
local mirrors it is configured with (``pip config list``), as on a new machine of this kind, while uv downloads
everything from PyPI.

    .venv/bin/python bench/newcomer.py                     # warm-pip (baseline), warm, cold
    .venv/bin/python bench/newcomer.py --modes warm
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import av
import httpx
from cloudflare import Cloudflare
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import free_port  # noqa: E402
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.e2e.make_run import make_run  # noqa: E402


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _du_mb(path: Path) -> float:
    total = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0
    return round(total / 1e6, 1)


def first_recording(mode: str, record_seconds: float) -> dict[str, Any]:
    """One clone → serving → composite-playable run; ``mode`` is ``warm``, ``cold`` (empty pip and uv caches)
    or ``warm-pip`` (the baseline: ``make run INSTALLER=pip``, warm cache)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"newcomer-{mode}-"))
    phases: dict[str, float] = {}
    load_start = _load()
    t0 = time.monotonic()
    try:
        clone = tmp / "roomtape"
        subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
        phases["clone"] = time.monotonic() - t0
        cache = tmp / "cache"
        extra = {"PIP_CACHE_DIR": str(cache / "pip"), "UV_CACHE_DIR": str(cache / "uv")} if mode == "cold" else {}
        make_args = ("INSTALLER=pip",) if mode == "warm-pip" else ()
        with make_run(clone, clone / ".venv", clone / "data", free_port(), extra, make_args) as run:
            phases["make_run_serving"] = time.monotonic() - t0
            creds = run.credentials
            ids = {"account_id": creds["account_id"], "app_id": creds["app_id"]}
            cf = Cloudflare(api_token=creds["api_token"], base_url=run.base_url, max_retries=0)
            meeting = cf.realtime_kit.meetings.create(creds["app_id"], account_id=ids["account_id"], title="first")
            assert meeting.data is not None and meeting.data.id
            tokens = []
            for name in ("alice", "bob"):
                p = cf.realtime_kit.meetings.add_participant(
                    meeting.data.id, **ids, name=name, custom_participant_id=name, preset_name="group_call_host"
                )
                assert p.data is not None
                tokens.append(p.data.token)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                try:
                    pages = []
                    for token in tokens:
                        page = browser.new_context().new_page()
                        page.goto(f"{run.base_url}/join/{meeting.data.id}?token={token}")
                        page.get_by_role("button", name="Join with camera and microphone").click()
                        pages.append(page)
                    for page in pages:
                        page.wait_for_function("window.roomtape && window.roomtape.ready === true", timeout=60_000)
                    time.sleep(1.0)  # both have subscribed to each other
                    phases["two_joined"] = time.monotonic() - t0
                    started = cf.realtime_kit.recordings.start_recordings(
                        ids["app_id"], account_id=ids["account_id"], meeting_id=meeting.data.id
                    )
                    assert started.data is not None
                    rid = started.data.id
                    time.sleep(record_seconds)
                    cf.realtime_kit.recordings.pause_resume_stop_recording(rid, **ids, action="stop")
                    phases["recording_stopped"] = time.monotonic() - t0
                finally:
                    browser.close()
            deadline = time.monotonic() + 300
            while True:
                one = cf.realtime_kit.recordings.get_one_recording(rid, **ids).data
                assert one is not None
                if one.status in ("UPLOADED", "ERRORED"):
                    break
                assert time.monotonic() < deadline, f"recording still {one.status}"
                time.sleep(0.25)
            assert one.status == "UPLOADED" and one.download_url, one
            phases["composite_uploaded"] = time.monotonic() - t0
            path = tmp / "composite.mp4"
            path.write_bytes(httpx.get(one.download_url, timeout=60).content)
            with av.open(str(path)) as container:
                video_frames = sum(1 for _ in container.decode(video=0))
            with av.open(str(path)) as container:
                audio_samples = sum(f.samples for f in container.decode(audio=0))
            assert video_frames > 0 and audio_samples > 0, (video_frames, audio_samples)
            phases["composite_playable"] = time.monotonic() - t0
        return {
            "mode": mode,
            "seconds": {k: round(v, 2) for k, v in phases.items()},
            "total_seconds": round(phases["composite_playable"], 2),
            "record_seconds": record_seconds,
            "composite": {"video_frames": video_frames, "audio_samples": audio_samples, "bytes": path.stat().st_size},
            "cache_mb_after": _du_mb(cache) if mode == "cold" else None,
            "venv_mb": _du_mb(clone / ".venv"),
            "load_average_start": load_start,
            "load_average_end": _load(),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--modes", default="warm-pip,warm,cold", help="comma-separated: warm-pip, warm, cold")
    parser.add_argument("--record-seconds", type=float, default=5.0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "newcomer.json"))
    args = parser.parse_args()
    goals = {"cold": 300.0, "warm": 60.0, "warm-pip": 60.0}
    runs = []
    for mode in args.modes.split(","):
        result = first_recording(mode, args.record_seconds)
        result["goal_seconds"] = goals[mode]
        result["goal_met"] = result["total_seconds"] <= goals[mode]
        print(json.dumps(result), flush=True)
        runs.append(result)
    out = {
        "benchmark": "newcomer: git clone -> make run serving -> first composite playable",
        "command": "python " + " ".join(["bench/newcomer.py", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "runs": runs,
    }
    by_mode = {r["mode"]: r for r in runs}
    if "warm" in by_mode and "warm-pip" in by_mode:
        out["warm_vs_pip_baseline"] = {
            phase: round(by_mode["warm"]["seconds"][phase] / by_mode["warm-pip"]["seconds"][phase], 3)
            for phase in ("make_run_serving", "composite_playable")
        }
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
