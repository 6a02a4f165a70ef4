"""The real ``livekit-agents`` package uploads a session report to roomtape.

An agent built on LiveKit Agents, with ``LIVEKIT_OBSERVABILITY_URL`` set to roomtape and its API key and
secret being a roomtape app's id and ``api_secret``, calls ``_upload_session_report`` when its session ends
(``JobContext._on_session_end``). This test calls that function of the installed package with a session
report built from the package's own classes — ``AgentSession`` options with recording on, a ``ChatContext``
with messages, a function call and its output, and a stereo OGG/Opus recording (user left, agent right) made
from espeak-ng speech — so the header protobuf, the JWT and the multipart body are the package's own. Then
the session, its recording and its transcript are in roomtape's API.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import webvtt
from livekit.agents import AgentSession
from livekit.agents.job import _observability_url
from livekit.agents.llm import ChatContext, FunctionCall, FunctionCallOutput
from livekit.agents.observability import Tagger
from livekit.agents.telemetry import _upload_session_report
from livekit.agents.voice.report import SessionReport
from sqlalchemy import select
from tests.conftest import Server
from tests.integration.transcripts.livekit_media import (
    RATE,
    decode_stereo,
    ogg_opus,
    onset,
    place,
    speech,
    wait_uploaded,
)
from tests.integration.transcripts.test_transcripts_api import in_db

from roomtape.db.models import OutboxEvent

GREETING = "Hello, thanks for calling. How can I help?"
QUESTION = "What time do you open tomorrow?"
ANSWER = "We open at nine in the morning."


def kit(server: Server, app: dict[str, str], path: str, **params: Any) -> Any:
    url = f"{server.base_url}/accounts/{app['account_id']}/realtime/kit/{app['app_id']}{path}"
    r = httpx.get(url, params=params, headers={"Authorization": f"Bearer {app['api_token']}"}, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()["data"]


def test_livekit_agents_upload_code_brings_the_session_in(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = server.new_app("livekit-agent")
    # The agent's environment: nothing else changes in its code.
    monkeypatch.setenv("LIVEKIT_API_KEY", app["app_id"])
    monkeypatch.setenv("LIVEKIT_API_SECRET", app["api_secret"])
    monkeypatch.setenv("LIVEKIT_OBSERVABILITY_URL", server.base_url)
    observability_url = _observability_url("wss://my-livekit.example.invalid")  # the package's own lookup
    assert observability_url == server.base_url

    # A finished session as the framework reports it: recording on, what was said, the recorder's file.
    t0 = float(int(time.time()) - 60)  # the header carries milliseconds
    greeting, question, answer = (
        speech(GREETING, tmp_path),
        speech(QUESTION, tmp_path, "en+f3"),
        speech(ANSWER, tmp_path),
    )
    spans = {"greeting": (0.6, greeting), "question": (4.2, question), "answer": (7.4, answer)}
    duration = 7.4 + len(answer) / RATE + 0.6
    user = place(duration, [spans["question"]])
    agent = place(duration, [spans["greeting"], spans["answer"]])
    recording = tmp_path / "recording.ogg"
    recording.write_bytes(ogg_opus(user, agent))

    def said(at: float, pcm: Any) -> dict[str, float]:
        return {"started_speaking_at": t0 + at, "stopped_speaking_at": t0 + at + len(pcm) / RATE}

    history = ChatContext.empty()
    history.add_message(role="assistant", content=GREETING, created_at=t0 + 0.5, metrics=said(*spans["greeting"]))
    history.add_message(role="user", content=QUESTION, created_at=t0 + 6.0, metrics=said(*spans["question"]))
    call = FunctionCall(call_id="call_1", name="opening_hours", arguments='{"day": "tomorrow"}', created_at=t0 + 6.2)
    output = FunctionCallOutput(
        call_id="call_1", name="opening_hours", output="9:00-17:00", is_error=False, created_at=t0 + 6.3
    )
    history.insert([call, output])
    history.add_message(
        role="assistant", content=ANSWER, interrupted=False, created_at=t0 + 7.3, metrics=said(*spans["answer"])
    )

    async def end_of_session() -> None:
        """What ``JobContext._on_session_end`` does: the report of the session, then the upload."""
        session: AgentSession[None] = AgentSession()
        session.options.recording_options.update(audio=True, transcript=True, traces=False, logs=False)
        report = SessionReport(
            job_id="AJ_roomtape_test",
            room_id="RM_roomtape_test",
            room="support-line",
            options=session.options,
            events=[],
            chat_history=history,
            audio_recording_path=recording,
            audio_recording_started_at=t0,
            duration=duration,
            started_at=t0,
            timestamp=t0 + duration,
            agent_name="support-agent",
        )
        async with aiohttp.ClientSession() as http:
            # Raises on an HTTP error (aiohttp's raise_for_status): roomtape must answer 2xx.
            await _upload_session_report(
                agent_name="support-agent",
                observability_url=observability_url,
                report=report,
                tagger=Tagger(),
                http_session=http,
            )

    asyncio.run(end_of_session())

    # The session, in the RealtimeKit API, in a meeting named after the LiveKit room.
    [meeting] = [m for m in kit(server, app, "/meetings") if m["title"] == "LiveKit room support-line"]
    [row] = kit(server, app, "/sessions", associated_id=meeting["id"])["sessions"]
    assert row["status"] == "ENDED"
    session_id = row["id"]

    # Its recording: uploaded to the app's storage, the same stereo audio, user left and agent right.
    [listed] = kit(server, app, "/recordings", meeting_id=meeting["id"])
    rec = wait_uploaded(server.base_url, app["api_token"], app["account_id"], app["app_id"], listed["id"])
    assert rec["session_id"] == session_id and rec["output_file_name"] == "recording.ogg"
    downloaded = httpx.get(rec["download_url"], timeout=30).content
    assert downloaded == recording.read_bytes()
    audio = decode_stereo(downloaded)
    assert audio.shape[0] == 2 and abs(audio.shape[1] / RATE - duration) < 0.1, audio.shape
    assert abs(onset(audio[0]) - 4.2) < 0.05, onset(audio[0])  # the user's question, on the left
    assert abs(onset(audio[1]) - 0.6) < 0.05, onset(audio[1])  # the agent's greeting, on the right

    # Its transcript: the three messages (the function call is not speech), on the recording's clock.
    headers = {"Authorization": f"Bearer {app['api_token']}"}
    rich = httpx.get(f"{server.base_url}/v1/recordings/{rec['id']}/transcript", headers=headers).json()
    got = [(i["role"], i["text"], i["channel"], round(i["start"], 3), i["source"]) for i in rich["items"]]
    assert got == [
        ("assistant", GREETING, "right", 0.6, "livekit"),
        ("user", QUESTION, "left", 4.2, "livekit"),
        ("assistant", ANSWER, "right", 7.4, "livekit"),
    ]
    vtt = httpx.get(
        f"{server.base_url}/v1/sessions/{session_id}/transcript", params={"format": "vtt"}, headers=headers
    ).text
    assert [(c.voice, c.text) for c in webvtt.from_string(vtt)] == [
        ("Agent", GREETING),
        ("User", QUESTION),
        ("Agent", ANSWER),
    ]
    livekit = httpx.get(
        f"{server.base_url}/v1/sessions/{session_id}/transcript", params={"format": "livekit"}, headers=headers
    ).json()
    assert [i["id"] for i in livekit["items"]] == [m.id for m in history.messages()]

    # ... and the meeting.transcript webhook, with the messages inline.
    async def events(db):  # type: ignore[no-untyped-def]
        rows = await db.scalars(select(OutboxEvent).where(OutboxEvent.event == "meeting.transcript"))
        return [r.payload for r in rows if r.payload["meeting"]["sessionId"] == session_id]

    [payload] = in_db(server, events)
    assert payload["itemCount"] == 3 and payload["meeting"]["title"] == "LiveKit room support-line"
