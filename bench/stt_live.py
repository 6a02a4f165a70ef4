"""Live transcription latency: how soon what a participant said is in the transcript, and how soon after the
meeting the whole transcript is complete.

A real server (subprocess, SQLite) hosts a meeting with ``ai_config.transcription``; one participant (a real
aiortc peer, ``RoomClient`` + ``AudioPushTrack``) says :data:`PHRASES` (espeak-ng, 140 wpm) with
:data:`PAUSE` seconds of silence after each, never muting; the transcript API is polled every 0.1 s.

- **speech → items**: from the moment a phrase's audio finished going out to the moment its first item is in
  the transcript (includes the 2 s without sound that closes a segment, the decode and PocketSphinx);
- **leave → complete**: from the participant's leave to ``meeting.transcript`` in the outbox (everything
  transcribed; the session's 60 s keep-alive is scaled to 0.6 s here).

Baseline in the same run: the after-stop path (how roomtape transcribed a meeting before): the same speech as
one recorded Opus segment (the participant never muted), decoded with ``load_pcm`` and transcribed by the same
PocketSphinx after the stop; its wall time is what "leave → complete" cost then, on top of the stop.

Usage: ``.venv/bin/python bench/stt_live.py [--out bench/results/stt_live.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import start_server, stop_server  # noqa: E402
from tests.integration.recording.compose_media import RATE, SESSION, record_audio  # noqa: E402
from tests.integration.signaling.signaling_helpers import SERVER_ENV, Api, outbox  # noqa: E402
from tests.speech import concatenate  # noqa: E402

from roomtape.agents import AudioPushTrack, RoomClient  # noqa: E402
from roomtape.transcripts.stt import PocketSphinx, load_pcm  # noqa: E402

PHRASES = [
    "good morning everyone",
    "let us start the meeting",
    "i will share my screen",
    "the report is due on friday",
    "i agree with that",
    "see you tomorrow",
]
PAUSE = 4.0
"""Seconds of silence after each phrase (more than the 2 s that close a segment)."""


def _48k(samples16: bytes) -> np.ndarray:
    x = np.frombuffer(samples16, dtype=np.int16).astype(np.float64)
    return np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)


async def live(tmp: Path) -> dict[str, Any]:
    server = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}", SERVER_ENV)
    try:
        api = Api(server)
        meeting_id = api.meeting(ai_config={"transcription": {"language": "en-US"}})
        _, token = api.participant(meeting_id, "Alice")
        client = RoomClient(server.base_url, token)
        await client.join()
        mic = AudioPushTrack()
        await client.publish(audio=mic)
        session_id = client.session_id
        transcript_url = f"{server.base_url}/v1/sessions/{session_id}/transcript"
        seen: dict[str, float] = {}  # item id -> when it was first listed
        items: dict[str, dict[str, Any]] = {}
        stop = asyncio.Event()

        async def poll() -> None:
            async with httpx.AsyncClient(headers={"Authorization": f"Bearer {server.api_token}"}) as http:
                while not stop.is_set():
                    r = await http.get(transcript_url, params={"format": "json"})
                    now = time.time()
                    for item in r.json()["items"]:
                        if item["id"] not in seen:
                            seen[item["id"]], items[item["id"]] = now, item
                    await asyncio.sleep(0.1)

        poller = asyncio.create_task(poll())
        spoken: list[tuple[str, float, float]] = []  # text, sound start, audio end (wall clock)
        await asyncio.sleep(1.0)
        for text in PHRASES:
            audio, (phrase,) = concatenate([text], gap=0.0, lead=0.2)
            begins = time.time() + mic.due_in
            mic.push(_48k(audio.samples).astype(np.int16))
            spoken.append((text, begins + phrase.onset, begins + audio.duration))
            await asyncio.sleep(mic.due_in + PAUSE)
        left_at = time.time()
        await client.leave()
        while not [p for e, p in await outbox(server, meeting_id) if e == "meeting.transcript"]:  # noqa: ASYNC110
            await asyncio.sleep(0.1)  # the outbox is another process's database: polled
        complete_at = time.time()
        stop.set()
        await poller
        async with httpx.AsyncClient(headers={"Authorization": f"Bearer {server.api_token}"}) as http:
            origin = (await http.get(transcript_url, params={"format": "json"})).json()["origin_epoch"]
        latencies: list[float] = []
        per_phrase = []
        for text, sound, end in spoken:
            mine = [i for i in items.values() if sound - 0.5 <= origin + i["start"] <= end + 0.5]
            if not mine:
                per_phrase.append({"text": text, "heard": None, "latency_s": None})
                continue
            first = min(seen[i["id"]] for i in mine)
            latencies.append(first - end)
            heard = " ".join(i["text"] for i in sorted(mine, key=lambda i: i["start"]))
            per_phrase.append({"text": text, "heard": heard, "latency_s": round(first - end, 3)})
        return {
            "phrases": per_phrase,
            "speech_to_items_s": {
                "median": round(statistics.median(latencies), 3) if latencies else None,
                "max": round(max(latencies), 3) if latencies else None,
                "phrases_with_items": len(latencies),
            },
            "leave_to_complete_s": round(complete_at - left_at, 3),
            "items": len(items),
            "meeting_seconds": round(left_at - spoken[0][1], 1),
        }
    finally:
        stop_server(server)


async def after_stop(tmp: Path) -> dict[str, Any]:
    """The same speech as one recorded segment, transcribed after the stop (the path before live transcription)."""
    parts: list[bytes] = []
    for text in PHRASES:
        audio, _ = concatenate([text], gap=PAUSE, lead=0.2)
        parts.append(audio.samples)
    samples = _48k(b"".join(parts)) / 32768
    record_audio(tmp, "p", np.concatenate([samples, np.zeros(960)]), [(0.0, len(samples) / RATE)])
    (segment,) = (tmp / SESSION / "p" / "audio").glob("*.webm")
    backend = PocketSphinx()
    await backend.transcribe(load_pcm(segment).slice(0, 1.0))  # worker process and model loaded, as in a server
    started = time.monotonic()
    audio = await asyncio.to_thread(load_pcm, segment)
    heard = await backend.transcribe(audio)
    seconds = time.monotonic() - started
    return {"stop_to_complete_s": round(seconds, 3), "audio_s": round(audio.duration, 1), "words": len(heard.words)}


async def measure() -> tuple[dict[str, Any], dict[str, Any]]:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        return await live(Path(a)), await after_stop(Path(b))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(ROOT / "bench/results/stt_live.json"))
    args = parser.parse_args()
    load_before = os.getloadavg()
    measured, baseline = asyncio.run(measure())
    load_after = os.getloadavg()
    ratio = measured["leave_to_complete_s"] / baseline["stop_to_complete_s"]
    result = {
        "command": "python bench/stt_live.py",
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": [load_before, load_after]},
        "backend": "pocketsphinx/en-us",
        "live": measured,
        "baseline_after_stop": baseline,
        "ratio_leave_to_complete_vs_after_stop": round(ratio, 3),
        "notes": [
            "speech_to_items includes the 2 s of silence that close a segment (recording gap_seconds)",
            "leave_to_complete includes the session keep-alive (60 s x 0.01 here) and webhook queueing",
            "the baseline is the after-stop transcription alone (no render, upload or stop)",
        ],
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
