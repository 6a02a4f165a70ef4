"""The PocketSphinx worker process ends with the server that started it, even a SIGKILLed one.

A server killed in a test run (and the live-STT test's server is stopped that way) used to leave its decoder
process and multiprocessing's resource tracker behind for good, waiting on a queue nobody writes to.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

SERVER = """
import os, sys
from roomtape.transcripts.stt import sphinx
print(sphinx._decoder_pool().submit(os.getpid).result(timeout=60), flush=True)
sys.stdin.read()  # stay alive until killed
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child of init is gone for our purposes; read its state.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1][0] != "Z"


def test_the_decoder_process_dies_with_a_killed_server() -> None:
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    worker = 0
    try:
        assert server.stdout is not None
        worker = int(server.stdout.readline())
        assert worker != server.pid and alive(worker)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 10
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(worker), "the decoder process outlived its server"
    finally:
        server.kill()
        if worker and alive(worker):
            os.kill(worker, signal.SIGKILL)
