"""Uploads one file with a storage backend and prints its peak RSS (used by the big-file contract test).

Usage: ``python storage_uploader.py LOCAL_PATH KEY`` with the plaintext storage_config as JSON on stdin.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from roomtape.storage.registry import build_backend
from roomtape.storage.signer import DownloadSigner


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


async def main() -> None:
    config = json.loads(sys.stdin.read())
    backend = build_backend(
        config, signer=DownloadSigner("x", "http://127.0.0.1:1"), scope="default", data_dir=Path(config["data_dir"])
    )
    await backend.exists("warm/up")  # open connections and import everything before measuring
    before = _status("VmRSS")
    stat = await backend.put_file(Path(sys.argv[1]), sys.argv[2])
    # VmHWM, not getrusage's ru_maxrss: after fork+exec the latter still counts the parent's (pytest's) peak.
    peak = _status("VmHWM")
    await backend.close()
    print(json.dumps({"size": stat.size, "rss_before": before, "peak_rss": peak}))


asyncio.run(main())
