"""VideoSDK's rooms, sessions and recording lists over real HTTP, with a real aiortc participant.

A VideoSDK user creates a room (``POST /v2/rooms``, idempotent on ``customRoomId``), a participant joins it by
its room id, the user records it through the ``/v2`` endpoints, lists sessions and recordings, downloads the
listed files and decodes them, deletes them, deactivates the room. Another account sees none of it (404, no
data); bad input is refused with a message and changes nothing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import av
import httpx
import jwt
import numpy as np
import pytest
from tests.integration.media.roomtape_media_peers import CounterVideoTrack, ToneAudioTrack, dominant_frequency
from tests.integration.recording.recording_server import LiveServer, live_server, wait_for

from roomtape.agents import JoinError, RoomClient
from roomtape.db.accounts import create_app_with_account

pytestmark = pytest.mark.timeout(180)


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path) as server:
        yield server


def app_jwt(app_id: str, secret: str) -> dict[str, str]:
    """VideoSDK's server-side auth: a bare HS256 JWT with ``apikey`` (no ``Bearer``)."""
    claims = {"apikey": app_id, "permissions": ["allow_join"], "version": 2, "exp": int(time.time()) + 600}
    return {"Authorization": jwt.encode(claims, secret, algorithm="HS256")}


async def add_participant(srv: LiveServer, http: httpx.AsyncClient, room_id: str, name: str) -> str:
    """A join token for the room, from the RealtimeKit API (a VideoSDK room is a meeting)."""
    r = await http.post(
        f"/accounts/{srv.account_id}/realtime/kit/{srv.app_id}/meetings/{room_id}/participants",
        json={"name": name, "custom_participant_id": name, "preset_name": "group_call_host"},
        headers={"Authorization": f"Bearer {srv.api_token}"},
    )
    assert r.status_code == 201, r.text
    return str(r.json()["data"]["token"])


async def download(http: httpx.AsyncClient, url: str, path: Path) -> Path:
    r = await http.get(url)
    assert r.status_code == 200, r.text[:300]
    await asyncio.to_thread(path.write_bytes, r.content)
    return path


async def wait_json(http: httpx.AsyncClient, url: str, headers: dict[str, str], ok: Any, within: float) -> Any:
    deadline = time.monotonic() + within
    while True:
        r = await http.get(url, headers=headers)
        assert r.status_code == 200, r.text
        if ok(r.json()):
            return r.json()
        assert time.monotonic() < deadline, f"{url}: {r.json()}"
        await asyncio.sleep(0.25)


async def test_videosdk_room_session_recordings_lifecycle(srv: LiveServer, tmp_path: Path) -> None:
    auth = app_jwt(srv.app_id, srv.api_secret)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
        # Create: 201, then the same customRoomId again answers the same room (200); the API token works too.
        r = await http.post("/v2/rooms", json={"customRoomId": "daily-standup"}, headers=auth)
        assert r.status_code == 201, r.text
        room = r.json()
        room_id = room["roomId"]
        assert room["customRoomId"] == "daily-standup" and room["disabled"] is False
        assert room["userId"] == srv.account_id and room["links"]["get_room"].endswith(f"/v2/rooms/{room_id}")
        again = await http.post("/v2/rooms", json={"customRoomId": "daily-standup"}, headers=auth)
        assert again.status_code == 200 and again.json()["roomId"] == room_id
        other = await http.post("/v2/rooms", headers={"Authorization": srv.api_token})
        assert other.status_code == 201 and other.json()["roomId"] != room_id

        listed = (await http.get("/v2/rooms", params={"perPage": 1}, headers=auth)).json()
        assert listed["pageInfo"] == {"currentPage": 1, "perPage": 1, "lastPage": 2, "total": 2}
        assert [x["roomId"] for x in listed["data"]] == [other.json()["roomId"]]  # newest first
        for ref in (room_id, "daily-standup"):
            assert (await http.get(f"/v2/rooms/{ref}", headers=auth)).json()["roomId"] == room_id
            assert (await http.get(f"/v2/rooms/validate/{ref}", headers=auth)).json()["roomId"] == room_id

        # A participant joins by the VideoSDK room id and publishes a 660 Hz tone and counter video.
        client = RoomClient(srv.base_url, await add_participant(srv, http, room_id, "alice"))
        await client.join()
        await client.publish(audio=ToneAudioTrack(660.0), video=CounterVideoTrack())
        try:
            sessions = await wait_json(http, "/v2/sessions", auth | {}, lambda j: j["pageInfo"]["total"] == 1, 10)
            sess = sessions["data"][0]
            assert sess["roomId"] == room_id and sess["customRoomId"] == "daily-standup"
            assert sess["status"] == "ongoing" and sess["end"] is None
            assert [p["participantId"] for p in sess["participants"]] == ["alice"]
            assert sess["participants"][0]["timelog"][0]["end"] is None

            # Record through /v2, addressing the room by its customRoomId.
            await asyncio.sleep(1.0)
            track = await http.post(
                "/v2/recordings/participant/track/start",
                json={"roomId": "daily-standup", "participantId": "alice", "kind": "audio"},
                headers=auth,
            )
            assert track.status_code == 200, track.text
            meeting_rec = await http.post("/v2/recordings/start", json={"roomId": "daily-standup"}, headers=auth)
            assert meeting_rec.status_code == 200, meeting_rec.text
            rec_id = meeting_rec.json()["recordingId"]
            await wait_for(lambda: _status(srv, rec_id, "RECORDING"), 20, "meeting recording RECORDING")
            await asyncio.sleep(3.0)
            stopped = await http.post("/v2/recordings/stop", json={"roomId": room_id}, headers=auth)
            assert stopped.status_code == 200, stopped.text
            r = await http.post(
                "/v2/recordings/participant/track/stop",
                json={"roomId": room_id, "participantId": "alice", "kind": "audio"},
                headers=auth,
            )
            assert r.status_code == 200, r.text
        finally:
            await client.leave()

        # The session ended, with alice's stay closed.
        ended = await wait_json(http, f"/v2/sessions/{sess['id']}", auth, lambda j: j["status"] == "ended", 90)
        assert ended["end"] is not None and ended["participants"][0]["timelog"][0]["end"] is not None
        by_custom = (await http.get("/v2/sessions", params={"customRoomId": "daily-standup"}, headers=auth)).json()
        assert [s["id"] for s in by_custom["data"]] == [sess["id"]]
        assert (await http.get("/v2/sessions", params={"status": "ongoing"}, headers=auth)).json()["data"] == []

        # The meeting recording is listed, uploaded, and its file decodes: ~3 s of video with the tone.
        recs = await wait_json(
            http,
            "/v2/recordings",
            auth,
            lambda j: j["data"] and j["data"][0]["status"] in ("completed", "failed"),
            120,
        )
        assert recs["pageInfo"]["total"] == 1
        item = recs["data"][0]
        assert item["id"] == rec_id and item["roomId"] == room_id and item["sessionId"] == sess["id"]
        assert item["status"] == "completed", item
        assert item["file"]["type"] == "video" and item["file"]["meta"]["format"] == "mp4"
        composite = await download(http, item["file"]["fileUrl"], tmp_path / "composite.mp4")
        with av.open(str(composite)) as container:
            duration = float(container.duration or 0) / av.time_base
            frames = sum(1 for _ in container.decode(video=0))
        assert 2.0 <= duration <= 8.0 and frames >= 45, (duration, frames)
        assert (await http.get(f"/v2/recordings/{rec_id}", headers=auth)).json()["file"]["size"] > 0

        # The track recording is listed by room and participant, its segment uploaded and decodable.
        tracks = await wait_json(
            http,
            "/v2/recordings/participant/track",
            auth,
            lambda j: j["data"] and j["data"][0]["status"] == "completed",
            60,
        )
        t = tracks["data"][0]
        assert t["kind"] == "audio" and t["mode"] == "track" and t["roomId"] == room_id
        assert t["files"] and all(f["fileUrl"] for f in t["files"]), t
        by_participant = await http.get(
            "/v2/recordings/participant/track",
            params={"roomId": "daily-standup", "participantId": "alice"},
            headers=auth,
        )
        assert [x["id"] for x in by_participant.json()["data"]] == [t["id"]]
        nobody = await http.get("/v2/recordings/participant/track", params={"participantId": "nobody"}, headers=auth)
        assert nobody.json()["data"] == []
        webm = await download(http, t["files"][0]["fileUrl"], tmp_path / "track.webm")
        with av.open(str(webm)) as container:
            samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(audio=0)]).astype(np.float64)
        assert abs(dominant_frequency(samples[48000 // 2 : 48000 * 2], 48000) - 660.0) < 15

        # Delete both; they are gone from the lists and the fetches.
        assert (await http.delete(f"/v2/recordings/{rec_id}", headers=auth)).status_code == 200
        assert (await http.get(f"/v2/recordings/{rec_id}", headers=auth)).status_code == 404
        assert (await http.delete(f"/v2/recordings/participant/track/{t['id']}", headers=auth)).status_code == 200
        assert (await http.get(f"/v2/recordings/participant/track/{t['id']}", headers=auth)).status_code == 404
        assert (await http.get("/v2/recordings", headers=auth)).json()["data"] == []

        # Deactivate: disabled, and a new join is refused.
        off = await http.post("/v2/rooms/deactivate", json={"roomId": "daily-standup"}, headers=auth)
        assert off.status_code == 200 and off.json()["disabled"] is True
        late = RoomClient(srv.base_url, await add_participant(srv, http, room_id, "bob"))
        with pytest.raises(JoinError):
            await late.join()


async def _status(srv: LiveServer, recording_id: str, status: str) -> bool:
    return (await srv.recording(recording_id)).status == status


async def test_videosdk_objects_are_invisible_to_another_account(srv: LiveServer) -> None:
    async with srv.ctx.sessions() as db:
        stranger = await create_app_with_account(db, "stranger", box=srv.ctx.box)
        await db.commit()
    assert stranger.api_secret is not None
    mine = app_jwt(srv.app_id, srv.api_secret)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
        room_id = (await http.post("/v2/rooms", json={"customRoomId": "private"}, headers=mine)).json()["roomId"]
        client = RoomClient(srv.base_url, await add_participant(srv, http, room_id, "p1"))
        await client.join()  # a live session, so that a recording can start
        rec = await http.post(
            "/v2/recordings/participant/track/start",
            json={"roomId": room_id, "participantId": "p1", "kind": "audio"},
            headers=mine,
        )
        assert rec.status_code == 200, rec.text  # waits for p1's track: a recording that exists
        rec_id = rec.json()["recordingId"]
        listed = (await http.get("/v2/recordings/participant/track", headers=mine)).json()
        assert [x["id"] for x in listed["data"]] == [rec_id]
        for theirs in (app_jwt(stranger.app_id, stranger.api_secret), {"Authorization": stranger.api_token}):
            for path in (f"/v2/rooms/{room_id}", "/v2/rooms/private", f"/v2/rooms/validate/{room_id}"):
                r = await http.get(path, headers=theirs)
                assert r.status_code == 404 and "customRoomId" not in r.text, (path, r.text)  # no room data
            assert (await http.get(f"/v2/recordings/{rec_id}", headers=theirs)).status_code == 404
            assert (await http.delete(f"/v2/recordings/{rec_id}", headers=theirs)).status_code == 404
            assert (await http.get(f"/v2/recordings/participant/track/{rec_id}", headers=theirs)).status_code == 404
            for path in ("/v2/rooms", "/v2/sessions", "/v2/recordings", "/v2/recordings/participant/track"):
                r = await http.get(path, headers=theirs)
                assert r.status_code == 200 and r.json()["data"] == [] and r.json()["pageInfo"]["total"] == 0
            r = await http.get("/v2/sessions", params={"roomId": room_id}, headers=theirs)
            assert r.status_code == 404
            r = await http.post("/v2/rooms/deactivate", json={"roomId": room_id}, headers=theirs)
            assert r.status_code == 404
        # Their own room with the same customRoomId is theirs: a different room.
        r = await http.post(
            "/v2/rooms", json={"customRoomId": "private"}, headers={"Authorization": stranger.api_token}
        )
        assert r.status_code == 201 and r.json()["roomId"] != room_id
        r = await http.get(f"/v2/rooms/{room_id}", headers=mine)
        assert r.json()["disabled"] is False  # the stranger's deactivate changed nothing
        stop = {"roomId": room_id, "participantId": "p1", "kind": "audio"}
        assert (await http.post("/v2/recordings/participant/track/stop", json=stop, headers=mine)).status_code == 200
        await client.leave()


async def test_videosdk_bad_input_is_refused_and_changes_nothing(srv: LiveServer) -> None:
    auth = app_jwt(srv.app_id, srv.api_secret)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
        for body in ({"customRoomId": ""}, {"customRoomId": "x" * 300}, {"customRoomId": 7}):
            r = await http.post("/v2/rooms", json=body, headers=auth)
            assert r.status_code == 400 and "customRoomId" in r.json()["error"]["message"], r.text
        for params in ({"perPage": 0}, {"perPage": 101}, {"page": 0}):
            r = await http.get("/v2/rooms", params=params, headers=auth)
            assert r.status_code == 400, r.text
        assert (await http.get("/v2/sessions", params={"status": "paused"}, headers=auth)).status_code == 400
        assert (await http.get("/v2/rooms", headers={"Authorization": "nope"})).status_code == 401
        forged = app_jwt(srv.app_id, "not-the-secret")
        assert (await http.post("/v2/rooms", json={}, headers=forged)).status_code == 401
        assert (await http.post("/v2/rooms/deactivate", json={"roomId": "missing"}, headers=auth)).status_code == 404
        assert (await http.get("/v2/recordings/not-a-uuid", headers=auth)).status_code in (400, 404)
        # An API token whose account has two apps cannot say which app a room is for: 403, nothing created.
        async with srv.ctx.sessions() as db:
            await create_app_with_account(db, "second", account_id=srv.account_id)
            await db.commit()
        r = await http.post("/v2/rooms", json={"customRoomId": "ambiguous"}, headers={"Authorization": srv.api_token})
        assert r.status_code == 403 and "several apps" in r.json()["error"]["message"], r.text
        assert (await http.get("/v2/rooms", headers=auth)).json()["pageInfo"]["total"] == 0
