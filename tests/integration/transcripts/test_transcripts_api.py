"""Transcripts against a real server on SQLite and PostgreSQL: REST ingest, exports (Cloudflare SDK, VTT, SRT,
LiveKit JSON), bad input, another app's token, the LiveKit Agents upload and ``meeting.transcript``."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import srt
import webvtt
from cloudflare import Cloudflare
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import func, select
from tests.conftest import Server
from tests.integration.transcripts.livekit_media import ogg_opus, place, tone, wait_uploaded

from roomtape.db import lifecycle
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.models import Meeting, OutboxEvent, Participant, Recording, Session
from roomtape.db.models import TranscriptItem as Row
from roomtape.transcripts.ingest import on_session_ended


def in_db(server: Server, fn):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        engine = create_engine(server.database_url)
        try:
            async with session_factory(engine)() as db:
                result = await fn(db)
                await db.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(go())


@pytest.fixture(scope="module")
def cf(server: Server) -> Iterator[Cloudflare]:
    client = Cloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0)
    yield client
    client.close()


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_token}"}) as c:
        yield c


def new_session(cf: Cloudflare, server: Server) -> str:
    kit = cf.realtime_kit
    m = kit.meetings.create(server.app_id, account_id=server.account_id, title="Agent call").data
    assert m is not None
    p = kit.meetings.add_participant(
        m.id,
        account_id=server.account_id,
        app_id=server.app_id,
        custom_participant_id="u",
        preset_name="group_call_participant",
    ).data
    assert p is not None

    async def join(db):  # type: ignore[no-untyped-def]
        session, _ = await lifecycle.participant_joined(
            db, await db.get(Meeting, m.id), await db.get(Participant, p.id)
        )
        return session.id

    return str(in_db(server, join))


def count_items(server: Server, session_id: str) -> int:
    async def count(db):  # type: ignore[no-untyped-def]
        return await db.scalar(select(func.count()).select_from(Row).where(Row.session_id == session_id))

    return int(in_db(server, count))


EVENTS: list[dict[str, Any]] = [
    {
        "type": "conversation_item_added",
        "role": "assistant",
        "text": "Hello, how can I help?",
        "start": 0.5,
        "end": 2.0,
    },
    {"type": "user_input_transcribed", "transcript": "I need", "is_final": False, "speaker_id": "S1", "start": 2.5},
    {"type": "user_input_transcribed", "transcript": "I need a refund", "is_final": False, "speaker_id": "S1"},
    {
        "type": "user_input_transcribed",
        "transcript": "I need a <refund> & more",
        "is_final": True,
        "speaker_id": "S1",
        "language": "en",
        "start": 2.5,
        "end": 4.0,
        "words": [{"word": "I", "start": 2.5, "end": 2.6}],
    },
    {
        "type": "conversation_item_added",
        "item": {"id": "item_lk1", "role": "assistant", "content": ["Sure, one moment."], "interrupted": True},
        "spoken_text": "Sure",
        "start": 4.5,
        "end": 5.0,
    },
]


def test_ingest_then_export_in_every_format(cf: Cloudflare, http: httpx.Client, server: Server) -> None:
    session_id = new_session(cf, server)
    r = http.post(f"/v1/sessions/{session_id}/transcript", json=EVENTS)
    assert r.status_code == 201, r.text
    assert r.json()["data"]["stored"] == 5
    assert count_items(server, session_id) == 3  # interim results were replaced by the final

    link = cf.realtime_kit.sessions.get_session_transcripts(
        session_id, account_id=server.account_id, app_id=server.app_id, format="VTT"
    )
    assert link.data and link.data.session_id == session_id and link.data.transcript_download_url_expiry
    vtt = httpx.get(link.data.transcript_download_url)  # signed: no token needed
    assert vtt.status_code == 200 and vtt.headers["content-type"].startswith("text/vtt")
    cues = webvtt.from_string(vtt.text)
    assert [(c.voice, c.start, c.end) for c in cues] == [
        ("Agent", "00:00:00.500", "00:00:02.000"),
        ("S1", "00:00:02.500", "00:00:04.000"),  # the speaker the event named, as in the JSON export
        ("Agent", "00:00:04.500", "00:00:05.000"),
    ]
    assert "I need a &lt;refund&gt; &amp; more" in vtt.text and "<v Agent>Sure\n" in vtt.text
    tampered = link.data.transcript_download_url.replace("format=vtt", "format=srt")
    assert httpx.get(tampered).status_code == 401

    subs = list(srt.parse(http.get(f"/v1/sessions/{session_id}/transcript", params={"format": "srt"}).text))
    assert [s.content for s in subs] == [
        "Agent: Hello, how can I help?",
        "S1: I need a <refund> & more",
        "Agent: Sure",
    ]

    lk = http.get(f"/v1/sessions/{session_id}/transcript", params={"format": "livekit"}).json()
    assert [i["role"] for i in lk["items"]] == ["assistant", "user", "assistant"]
    last = lk["items"][2]
    assert last["id"] == "item_lk1" and last["interrupted"] is True and last["content"] == ["Sure, one moment."]
    assert set(last) >= {"id", "type", "role", "content", "interrupted", "created_at", "metrics"}
    assert last["metrics"]["stopped_speaking_at"] - last["metrics"]["started_speaking_at"] == pytest.approx(0.5)

    rich = http.get(f"/v1/sessions/{session_id}/transcript").json()
    user = rich["items"][1]
    assert user["speaker_id"] == "S1" and user["language"] == "en" and user["start"] == 2.5
    assert user["words"][0]["word"] == "I" and user["source"] == "api"

    # the same id again replaces the item instead of adding one
    again = dict(EVENTS[4], spoken_text="Sure, one")
    assert http.post(f"/v1/sessions/{session_id}/transcript", json=again).status_code == 201
    assert count_items(server, session_id) == 3

    # not while the session is live
    assert in_db(server, lambda db: on_session_ended(db, session_id)) is None
    assert transcript_events(server, session_id) == []

    # the session ends (the lifecycle's own path) -> meeting.transcript, once
    async def end(db):  # type: ignore[no-untyped-def]
        await lifecycle.mark_all_left(db, session_id)
        ended = await lifecycle.end_session_if_idle(db, session_id)
        again = await on_session_ended(db, session_id)
        return ended, again is None

    assert in_db(server, end) == (True, True)
    [payload] = transcript_events(server, session_id)
    assert payload["itemCount"] == 3 and payload["transcript"]["items"][0]["role"] == "assistant"
    assert payload["revision"] == 1 and payload["updated"] is False and payload["meeting"]["status"] == "ENDED"

    # items that arrive after the end (a late REST ingest) -> meeting.transcript again, the next revision
    late = {
        "type": "conversation_item_added",
        "id": "item_late",
        "role": "assistant",
        "text": "Your refund is on its way.",
        "start": 6,
    }
    r = http.post(f"/v1/sessions/{session_id}/transcript", json=late)
    assert r.status_code == 201, r.text
    first, second = transcript_events(server, session_id)
    assert first == payload
    assert second["revision"] == 2 and second["updated"] is True and second["itemCount"] == 4
    assert second["transcript"]["items"][-1]["content"] == ["Your refund is on its way."]
    assert second["transcriptDownloadUrl"].startswith(server.base_url)
    got = httpx.get(second["transcriptDownloadUrl"]).json()  # the signed link works without a token
    assert [i["text"] for i in got["items"]][-1] == "Your refund is on its way."
    # the same items again change nothing: no new event
    assert http.post(f"/v1/sessions/{session_id}/transcript", json=late).status_code == 201
    assert len(transcript_events(server, session_id)) == 2
    # a bad late batch (a word that ends before it starts) is refused whole: nothing stored, no event
    words = [{"word": "Bye", "start": 9.0, "end": 8.5}]
    bad = [{**late, "id": "item_bye", "text": "Bye", "start": 8, "end": 9, "words": words}]
    r = http.post(f"/v1/sessions/{session_id}/transcript", json=bad)
    assert r.status_code == 400 and "before start" in r.json()["error"]["message"], r.text
    assert count_items(server, session_id) == 4 and len(transcript_events(server, session_id)) == 2


def transcript_events(server: Server, session_id: str) -> list[dict[str, Any]]:
    async def events(db):  # type: ignore[no-untyped-def]
        rows = await db.scalars(
            select(OutboxEvent).where(OutboxEvent.event == "meeting.transcript").order_by(OutboxEvent.created_at)
        )
        return [r.payload for r in rows if r.payload["meeting"]["sessionId"] == session_id]

    return list(in_db(server, events))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"type": "conversation_item_added", "role": "user", "text": "x", "start": 3, "end": 1}, "before start"),
        ([EVENTS[0], {"type": "user_input_transcribed", "transcript": "   "}], "empty"),
        ({"type": "conversation_item_added", "role": "robot", "text": "x"}, "role"),
        ({"type": "other"}, ""),
        ([], "no transcript events"),
    ],
)
def test_bad_input_is_400_and_stores_nothing(
    cf: Cloudflare, http: httpx.Client, server: Server, body: Any, message: str
) -> None:
    session_id = new_session(cf, server)
    r = http.post(f"/v1/sessions/{session_id}/transcript", json=body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    assert count_items(server, session_id) == 0


def test_unknown_session_and_another_apps_token_are_404(cf: Cloudflare, http: httpx.Client, server: Server) -> None:
    session_id = new_session(cf, server)
    assert http.post(f"/v1/sessions/{uuid.uuid4()}/transcript", json=EVENTS[0]).status_code == 404
    other = server.new_app("intruder")
    headers = {"Authorization": f"Bearer {other['api_token']}"}
    url = f"{server.base_url}/v1/sessions/{session_id}/transcript"
    assert httpx.post(url, json=EVENTS[0], headers=headers).status_code == 404
    assert httpx.get(url, headers=headers).status_code == 404
    kit_url = (
        f"{server.base_url}/accounts/{other['account_id']}/realtime/kit/{other['app_id']}"
        f"/sessions/{session_id}/transcript"
    )
    assert httpx.get(kit_url, headers=headers).status_code == 404
    assert httpx.get(url).status_code == 401
    assert count_items(server, session_id) == 0


def _header(room_id: str, start: float, duration_ms: int) -> bytes:
    ts = Timestamp()
    ts.FromMilliseconds(int(start * 1000))
    raw = ts.SerializeToString()
    return (
        b"\x0a"
        + bytes([len(room_id)])
        + room_id.encode()
        + b"\x18"
        + _varint(duration_ms)
        + b"\x22"
        + bytes([len(raw)])
        + raw
    )


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _livekit_token(app: dict[str, str]) -> str:
    now = int(time.time())
    claims = {"iss": app["app_id"], "sub": "", "nbf": now, "exp": now + 600, "observability": {"write": True}}
    return jwt.encode(claims, app["api_secret"], algorithm="HS256")


def test_livekit_agents_upload(server: Server) -> None:
    app = server.new_app("livekit")
    start = float(int(time.time()) - 30)  # whole seconds: the header carries milliseconds
    chat = {
        "items": [
            {"id": "item_a", "type": "message", "role": "assistant", "content": ["Hi, I'm your agent."],
             "interrupted": False, "metrics": {"started_speaking_at": start + 1, "stopped_speaking_at": start + 2.5},
             "created_at": start + 1},
            {"id": "item_b", "type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}",
             "created_at": start + 3},
            {"id": "item_c", "type": "message", "role": "user", "content": ["Hello!"], "interrupted": False,
             "metrics": {"started_speaking_at": start + 4, "stopped_speaking_at": start + 5}, "created_at": start + 5},
        ]
    }  # fmt: skip
    audio = ogg_opus(place(6, [(4, tone(300, 1))]), place(6, [(1, tone(700, 1.5))]))  # user left, agent right
    files = {
        "header": ("header.binpb", _header("RM_test", start, 20_000), "application/protobuf"),
        "chat_history": ("chat_history.json", json.dumps(chat).encode(), "application/json"),
        "audio": ("recording.ogg", audio, "audio/ogg"),
    }
    url = f"{server.base_url}/observability/recordings/v0"
    auth = {"Authorization": f"Bearer {_livekit_token(app)}"}
    r = httpx.post(url, files=files, headers=auth)
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["items"] == 2 and data["audio_bytes"] == len(audio) and data["recording_id"]
    # the audio is a recording of the session, uploaded to the app's storage like any other
    rec = wait_uploaded(server.base_url, app["api_token"], app["account_id"], app["app_id"], data["recording_id"])
    assert rec["session_id"] == data["session_id"] and rec["output_file_name"] == "recording.ogg"
    assert httpx.get(rec["download_url"]).content == audio

    headers = {"Authorization": f"Bearer {app['api_token']}"}
    vtt = httpx.get(
        f"{server.base_url}/v1/recordings/{data['recording_id']}/transcript", params={"format": "vtt"}, headers=headers
    )
    assert [(c.voice, c.start, c.end) for c in webvtt.from_string(vtt.text)] == [
        ("Agent", "00:00:01.000", "00:00:02.500"),
        ("User", "00:00:04.000", "00:00:05.000"),
    ]
    lk = httpx.get(
        f"{server.base_url}/v1/sessions/{data['session_id']}/transcript", params={"format": "livekit"}, headers=headers
    ).json()
    assert [i["id"] for i in lk["items"]] == ["item_a", "item_c"]

    # malformed uploads: 400 (or 401 for bad credentials) and nothing stored
    async def sessions(db):  # type: ignore[no-untyped-def]
        return await db.scalar(select(func.count()).select_from(Session).where(Session.app_id == app["app_id"]))

    async def recordings(db):  # type: ignore[no-untyped-def]
        return await db.scalar(select(func.count()).select_from(Recording).where(Recording.app_id == app["app_id"]))

    def stored() -> tuple[int, int, list[Path]]:
        return in_db(server, sessions), in_db(server, recordings), sorted((server.data_dir / "recordings").rglob("*"))

    before = stored()
    bad_chat = dict(files, chat_history=("chat_history.json", b"{not json", "application/json"))
    assert httpx.post(url, files=bad_chat, headers=auth).status_code == 400
    bad_audio = dict(files, audio=("recording.ogg", b"RIFF" + bytes(100), "audio/ogg"))
    assert httpx.post(url, files=bad_audio, headers=auth).status_code == 400
    cut = dict(files, audio=("recording.ogg", audio[:60], "audio/ogg"))  # Ogg magic, but no audio in it
    r = httpx.post(url, files=cut, headers=auth)
    assert r.status_code == 400 and "audio" in r.json()["error"]["message"], r.text
    bad_item = {"items": [{"type": "message", "role": "robot", "content": ["x"]}]}
    bad_items = dict(files, chat_history=("chat_history.json", json.dumps(bad_item).encode(), "application/json"))
    assert httpx.post(url, files=bad_items, headers=auth).status_code == 400
    backwards = {
        "items": [{**chat["items"][0], "metrics": {"started_speaking_at": start + 3, "stopped_speaking_at": start}}]
    }
    bad_span = dict(files, chat_history=("chat_history.json", json.dumps(backwards).encode(), "application/json"))
    r = httpx.post(url, files=bad_span, headers=auth)
    assert r.status_code == 400 and "before start" in r.json()["error"]["message"], r.text
    bad_header = dict(files, header=("header.binpb", b"\x0a\xff", "application/protobuf"))  # truncated field
    assert httpx.post(url, files=bad_header, headers=auth).status_code == 400
    no_header = {k: v for k, v in files.items() if k != "header"}
    assert httpx.post(url, files=no_header, headers=auth).status_code == 400
    assert httpx.post(url, content=b"x", headers={**auth, "Content-Type": "text/plain"}).status_code == 400
    forged = jwt.encode(
        {"iss": app["app_id"], "exp": int(time.time()) + 60},
        "a-wrong-secret-that-is-long-enough-for-hs256",
        algorithm="HS256",
    )
    assert httpx.post(url, files=files, headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    assert httpx.post(url, files=files, headers={"Authorization": f"Bearer {app['api_token']}"}).status_code == 401
    assert stored() == before
