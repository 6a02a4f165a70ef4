"""Live transcription against a real server on PostgreSQL: participants publish espeak-ng speech from real
aiortc peers into a meeting whose ``ai_config.transcription`` is on. Each closed audio segment is transcribed
(PocketSphinx, in its worker process) while the meeting goes on, with the participant's name as speaker and
times on the session clock; a recording of the session shows the live progress instead of transcribing
again; a meeting with no recording gets its transcript too; ``meeting.transcript`` goes out once, after the
last segment; the VTT and SRT exports name the speakers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import srt
import webvtt
from sqlalchemy import select
from tests.conftest import Server, start_server, stop_server
from tests.integration.signaling.signaling_helpers import SERVER_ENV, Api, outbox
from tests.speech import concatenate

from roomtape.agents import AudioPushTrack, RoomClient
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.models import TranscriptSegment

pytestmark = pytest.mark.timeout(240)

TRANSCRIBED = {"ai_config": {"transcription": {"language": "en-US"}}}
WITHIN = 90.0
"""Seconds to wait for a transcript (two shared cores; PocketSphinx loads its model on first use)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_database_url: str) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("live-stt")
    srv = start_server(tmp, pg_database_url, SERVER_ENV)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


def speech(text: str) -> tuple[np.ndarray, float]:
    """``text`` spoken by espeak-ng as 48 kHz int16 samples, and its measured onset in them (seconds)."""
    audio, (phrase,) = concatenate([text], gap=0.2, lead=0.3)
    x = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64)
    up = np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)
    return up.astype(np.int16), phrase.onset


async def say(mic: AudioPushTrack, text: str) -> float:
    """Push ``text`` into the microphone; returns the wall-clock time its sound starts going out."""
    pcm, onset = speech(text)
    starts = time.time() + mic.due_in + onset
    mic.push(pcm)
    await asyncio.sleep(mic.due_in + 0.2)  # until it went out
    return starts


def transcript(server: Server, session_id: str, fmt: str = "json") -> Any:
    response = httpx.get(
        f"{server.base_url}/v1/sessions/{session_id}/transcript",
        params={"format": fmt},
        headers={"Authorization": f"Bearer {server.api_token}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json() if fmt == "json" else response.text


async def wait_items(server: Server, session_id: str, pred: Any, what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + WITHIN
    while True:
        items: list[dict[str, Any]] = transcript(server, session_id)["items"]
        if pred(items):
            return items
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {items}"
        await asyncio.sleep(0.3)


async def transcript_events(server: Server, meeting_id: str, at_least: int = 1) -> list[dict[str, Any]]:
    """The meeting's ``meeting.transcript`` payloads once there are ``at_least``, and a little later (a
    second one would have been queued by then)."""
    deadline = time.monotonic() + WITHIN
    while len([p for e, p in await outbox(server, meeting_id) if e == "meeting.transcript"]) < at_least:
        assert time.monotonic() < deadline, "no meeting.transcript"
        await asyncio.sleep(0.3)
    await asyncio.sleep(2.0)
    return [p for e, p in await outbox(server, meeting_id) if e == "meeting.transcript"]


async def join(api: Api, server: Server, meeting_id: str, name: str) -> tuple[str, RoomClient, AudioPushTrack]:
    participant_id, token = api.participant(meeting_id, name)
    client = RoomClient(server.base_url, token)
    await client.join()
    mic = AudioPushTrack()
    await client.publish(audio=mic)
    return participant_id, client, mic


async def test_items_arrive_during_the_meeting_and_the_recording_shows_the_live_progress(
    server: Server, api: Api
) -> None:
    meeting_id = api.meeting(**TRANSCRIBED)
    alice_id, alice, mic = await join(api, server, meeting_id, "Alice")
    try:
        assert alice.session_id is not None
        session_id = alice.session_id
        recording = api._call("POST", "/recordings", json={"meeting_id": meeting_id})
        await asyncio.sleep(1.0)
        said_at = await say(mic, "good morning everyone")
        # The segment closes once the speech stopped for the gap (2 s): its items arrive, Alice still speaking.
        items = await wait_items(server, session_id, lambda i: len(i) >= 1, "the first segment's items")
        (session,) = api.sessions(meeting_id)
        assert session["status"] == "LIVE"
        rec = api._call("GET", f"/recordings/{recording['id']}")
        assert rec["status"] == "RECORDING"
        assert all(i["participant_id"] == alice_id and i["speaker_id"] == "Alice" for i in items)
        assert all(i["source"] == "stt" and i["role"] == "user" and i["words"] for i in items)
        assert "morning" in " ".join(i["text"] for i in items)
        first_word = items[0]["words"][0]
        origin = transcript(server, session_id)["origin_epoch"]
        # Times on the session clock, from the segment's timing manifest: the word starts where the sound did.
        assert abs(origin + first_word["start"] - said_at) < 0.3, (first_word, said_at - origin)
        assert items[0]["start_epoch"] == pytest.approx(origin + items[0]["start"], abs=0.002)

        await say(mic, "see you tomorrow")
    finally:
        await alice.leave()  # the last segment closes at the leave: only it is left to do after the stop
    events = await transcript_events(server, meeting_id)
    assert len(events) == 1, events
    items = transcript(server, session_id)["items"]
    assert events[0]["itemCount"] == len(items) >= 2 and not events[0]["updated"]
    texts = " ".join(i["text"] for i in items)
    assert "morning" in texts and ("tomorrow" in texts or "see" in texts), texts
    assert len({i["id"] for i in items}) == len(items)
    assert all(i["id"].startswith("stt-seg_") for i in items)  # the recording's job transcribed nothing again

    deadline = time.monotonic() + WITHIN
    while (rec := api._call("GET", f"/recordings/{recording['id']}"))["status"] != "UPLOADED":
        assert time.monotonic() < deadline and rec["status"] != "ERRORED", rec
        await asyncio.sleep(0.3)
    progress = rec["transcription"]
    assert progress["mode"] == "live" and progress["status"] == "done", progress
    assert progress["segments"] == progress["segments_done"] >= 2 and progress["items"] == len(items)
    assert progress["backend"] == "pocketsphinx/en-us"
    assert not (server.data_dir / "stt-spool" / session_id).exists()  # the spool is emptied


async def test_unrecorded_meeting_is_transcribed_per_speaker_and_exports_name_them(server: Server, api: Api) -> None:
    meeting_id = api.meeting(**TRANSCRIBED)
    alice_id, alice, alice_mic = await join(api, server, meeting_id, "Alice")
    bob_id, bob, bob_mic = await join(api, server, meeting_id, "Bob")
    try:
        session_id = alice.session_id
        assert session_id is not None and bob.session_id == session_id
        await say(alice_mic, "good morning everyone")
        await asyncio.sleep(0.5)
        await say(bob_mic, "i agree with that")
        await asyncio.sleep(2.5)  # both segments close (2 s without speech) while both are still in
    finally:
        await alice.leave()
        await bob.leave()
    events = await transcript_events(server, meeting_id)
    assert len(events) == 1, events
    assert api._call("GET", "/recordings", params={"meeting_id": meeting_id}) == []
    exported = transcript(server, session_id)
    items = exported["items"]
    assert events[0]["itemCount"] == len(items)
    # No recording to show it on: the progress comes with the session's transcript.
    progress = exported["transcription"]
    assert progress["mode"] == "live" and progress["status"] == "done" and progress["segments_failed"] == 0
    assert progress["segments"] == progress["segments_done"] == 2 and progress["items"] == len(items)
    speakers = {i["participant_id"]: i["speaker_id"] for i in items}
    assert speakers == {alice_id: "Alice", bob_id: "Bob"}, items
    alice_start = min(i["start"] for i in items if i["participant_id"] == alice_id)
    bob_start = min(i["start"] for i in items if i["participant_id"] == bob_id)
    assert bob_start > alice_start + 1.0  # Bob spoke after Alice, on the same (session) clock

    cues = webvtt.from_string(transcript(server, session_id, "vtt"))
    assert [c.voice for c in cues] == [i["speaker_id"] for i in items]
    subs = list(srt.parse(transcript(server, session_id, "srt")))
    assert [s.content for s in subs] == [f"{i['speaker_id']}: {i['text']}" for i in items]


async def test_meeting_without_transcription_spools_nothing(server: Server, api: Api) -> None:
    meeting_id = api.meeting()
    _, alice, mic = await join(api, server, meeting_id, "Alice")
    try:
        session_id = alice.session_id
        await say(mic, "good morning everyone")
        await asyncio.sleep(2.5)
    finally:
        await alice.leave()
    assert session_id is not None
    engine = create_engine(server.database_url)
    try:
        async with session_factory(engine)() as db:
            rows = await db.scalars(select(TranscriptSegment).where(TranscriptSegment.session_id == session_id))
            assert rows.all() == []
    finally:
        await engine.dispose()
    assert not (server.data_dir / "stt-spool" / session_id).exists()
    exported = transcript(server, session_id)
    assert exported["items"] == [] and "transcription" not in exported
