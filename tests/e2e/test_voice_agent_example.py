"""``examples/voice_agent.py`` against a real server, with Chromium as the caller on the join page.

Chromium's fake microphone plays a WAV file of espeak-ng speech (two sentences with pauses, looped). The
example greets, answers each utterance its energy VAD detects, records with ``recording=True`` and writes the
transcript; the test leaves once the agent has answered, then checks the recordings and the transcript.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import av
import httpx
import numpy as np
import pytest
from playwright.sync_api import sync_playwright
from tests.conftest import Server, start_server, stop_server
from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.integration.signaling.signaling_helpers import SERVER_ENV
from tests.integration.transcripts.livekit_media import RATE, decode_stereo, speech

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "voice_agent.py"
CALLER_LINES = ("Hi, I would like to book a table for tonight.", "For two people at eight o'clock, please.")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("voice-agent")
    srv = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}", SERVER_ENV)
    try:
        yield srv
    finally:
        stop_server(srv)


def caller_wav(directory: Path) -> Path:
    """The caller's microphone: each line, then 3 s of silence (Chromium loops the file)."""
    parts = []
    for line in CALLER_LINES:
        parts += [speech(line, directory, "en+f3"), np.zeros(3 * RATE, dtype=np.int16)]
    path = directory / "caller.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(np.concatenate(parts).tobytes())
    return path


def read_lines(stream: IO[str], into: queue.Queue[dict[str, Any]]) -> None:
    for line in stream:
        if line.startswith("{"):
            into.put(json.loads(line))


def next_event(events: queue.Queue[dict[str, Any]], name: str, seen: list[dict[str, Any]], within: float) -> Any:
    """Wait for the example's next ``name`` event (every event read on the way is kept in ``seen``)."""
    deadline = time.monotonic() + within
    while True:
        try:
            event = events.get(timeout=max(0.1, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError(f"no {name!r} event within {within} s; got {seen}") from None
        seen.append(event)
        if event["event"] == name:
            return event


def kit(server: Server, path: str, **params: Any) -> Any:
    url = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}{path}"
    r = httpx.get(url, params=params, headers={"Authorization": f"Bearer {server.api_token}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def uploaded(server: Server, recording_id: str, within: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        rec = dict(kit(server, f"/recordings/{recording_id}"))
        if rec["status"] == "UPLOADED":
            return rec
        assert rec["status"] != "ERRORED" and time.monotonic() < deadline, rec
        time.sleep(0.3)


def level(samples: np.ndarray, start: float, end: float) -> float:
    part = samples[int(start * RATE) : int(end * RATE)]
    return float(np.sqrt(np.mean(part**2))) if len(part) else 0.0


def test_voice_agent_example_talks_with_a_browser_caller(server: Server, tmp_path: Path, artifacts: Path) -> None:
    mic = caller_wav(tmp_path)
    transcript_path = tmp_path / "transcript.json"
    log = (tmp_path / "agent.log").open("w")
    agent = subprocess.Popen(
        [
            sys.executable,
            str(EXAMPLE),
            "--url",
            server.base_url,
            "--token",
            server.api_token,
            "--account-id",
            server.account_id,
            "--app-id",
            server.app_id,
            "--ice-host",
            "127.0.0.1",
            "--max-seconds",
            "150",
            "--transcript-out",
            str(transcript_path),
        ],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=ROOT,
    )
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    assert agent.stdout is not None
    threading.Thread(target=read_lines, args=(agent.stdout, events), daemon=True).start()
    seen: list[dict[str, Any]] = []
    try:
        join = next_event(events, "join_url", seen, 60)
        with sync_playwright() as pw:
            args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic}"]
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
            try:
                page = browser.new_page()
                page.goto(join["url"])
                page.get_by_role("button", name="Join with camera and microphone").click()
                page.wait_for_function("window.roomtape && window.roomtape.ready === true", timeout=20_000)
                greeted = next_event(events, "said", seen, 60)
                next_event(events, "heard", seen, 90)  # the caller's speech, after the greeting
                answer = next_event(events, "said", seen, 60)
                page.screenshot(path=str(artifacts / "voice-agent-caller.png"))
                page.get_by_role("button", name="Leave").click()
            finally:
                browser.close()
        done = next_event(events, "done", seen, 60)
        assert agent.wait(timeout=30) == 0
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        log.close()
    print("agent events:", json.dumps(seen))

    # The transcript the example wrote: the greeting, then the caller's turn, then an answer.
    transcript = json.loads(transcript_path.read_text())
    items = transcript["items"]
    said = [i for i in items if i["role"] == "assistant"]
    heard = [i for i in items if i["role"] == "user"]
    assert said[0]["text"] == greeted["text"] and said[0]["text"].startswith("Hello! I am the roomtape demo agent")
    assert answer["text"] in [i["text"] for i in said[1:]]
    assert heard and all(i["kind"] == "user_input_transcribed" and i["end"] > i["start"] for i in heard)
    # A whole sentence of the caller's (each is over 2 s; the VAD waits for silence after the agent spoke).
    assert heard[0]["end"] - heard[0]["start"] > 1.2, heard[0]
    assert heard[0]["start"] < said[1]["start"]  # the answer came after the caller spoke
    # Real speech-to-text (the embedded PocketSphinx), not a placeholder: words, timed inside the turn.
    print("heard:", [i["text"] for i in heard])
    words = heard[0]["words"]
    assert words and heard[0]["text"] == " ".join(w["word"] for w in words), heard[0]
    assert all(heard[0]["start"] - 0.01 <= w["start"] <= w["end"] <= heard[0]["end"] + 0.01 for w in words)
    spoken = {w.strip(".,!?'").lower() for line in CALLER_LINES for w in line.split()}
    assert spoken & {w["word"] for i in heard for w in i["words"]}, heard  # some of the caller's words

    # The composite: stereo, the caller's speech on the left during their turn, the agent's on the right.
    composite = uploaded(server, done["composite_recording_id"])
    data = httpx.get(composite["download_url"], timeout=30).content
    audio = decode_stereo(data)
    assert audio.shape[0] == 2, audio.shape
    on_recording = httpx.get(
        f"{server.base_url}/v1/recordings/{composite['id']}/transcript",
        headers={"Authorization": f"Bearer {server.api_token}"},
    ).json()["items"]
    greeting = next(i for i in on_recording if i["id"] == said[0]["id"])
    turn = next(i for i in on_recording if i["id"] == heard[0]["id"])
    silence = level(audio[1], 0, 0.3)
    assert level(audio[1], greeting["start"], greeting["end"]) > 10 * max(silence, 1e-4)  # agent: right
    assert level(audio[0], turn["start"], turn["end"]) > 10 * max(level(audio[0], 0, 0.3), 1e-4)  # caller: left

    # The agent's own track file (recording=True): uploaded, and it decodes to its speech.
    agent_recording = uploaded(server, done["track_recordings"][done["agent_participant_id"]])
    [file] = agent_recording["files"]
    assert file["participant_id"] == done["agent_participant_id"]
    path = next((server.data_dir / "storage").rglob(Path(file["path"]).name))
    with av.open(str(path)) as container:
        seconds = sum(f.samples for f in container.decode(audio=0)) / RATE
    assert seconds > 5, seconds
    caller_recording = uploaded(
        server, next(v for k, v in done["track_recordings"].items() if k != done["agent_participant_id"])
    )
    assert caller_recording["files"]
