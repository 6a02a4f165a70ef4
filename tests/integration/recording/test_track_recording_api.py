"""Participant track recording end to end: real aiortc publisher → Room → recorder threads → WebM files,
driven over real HTTP (VideoSDK and RealtimeKit shapes) on an in-process server."""

from __future__ import annotations

import asyncio
import io
import itertools
import time
from collections.abc import AsyncIterator
from pathlib import Path

import av
import httpx
import jwt
import numpy as np
import pytest
import requests
from cloudflare import AsyncCloudflare
from tests.integration.media.roomtape_media_peers import dominant_frequency, read_counter
from tests.integration.recording.recording_server import (
    LiveServer,
    MeetingRoom,
    live_server,
    open_meeting,
    publish,
    wait_for,
)

from roomtape.db.models import Recording
from roomtape.recording.manifest import load
from roomtape.recording.repair import needs_repair

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path) as server:
        yield server


# The seed's own snippets (seed 000 "Track Recording"), with only the URL and the token changed.
def start_track_recording(base_url: str, token: str, room_id: str, participant_id: str, kind: str = "audio"):  # type: ignore[no-untyped-def]
    url = f"{base_url}/v2/recordings/participant/track/start"
    payload = {
        "roomId": room_id,
        "participantId": participant_id,
        "kind": kind,
        "fileFormat": "webm",
        "webhookUrl": "https://www.example.com/",
        "bucketDirPath": "s3path",
    }
    headers = {"Authorization": token, "Content-Type": "application/json"}
    response = requests.post(url, json=payload, headers=headers)
    print(f"Started {kind} recording for participant {participant_id}: {response.text}")
    return response


def stop_track_recording(base_url: str, token: str, room_id: str, participant_id: str, kind: str = "audio"):  # type: ignore[no-untyped-def]
    url = f"{base_url}/v2/recordings/participant/track/stop"
    payload = {"roomId": room_id, "participantId": participant_id, "kind": kind}
    headers = {"Authorization": token, "Content-Type": "application/json"}
    response = requests.post(url, json=payload, headers=headers)
    print(f"Stopped {kind} recording for participant {participant_id}: {response.text}")
    return response


def app_jwt(srv: LiveServer, secret: str | None = None, **claims: object) -> str:
    body = {"apikey": srv.app_id, "permissions": ["allow_join"], "version": 2, "exp": int(time.time()) + 600}
    return jwt.encode({**body, **claims}, secret or srv.api_secret, algorithm="HS256")


def decode_audio(path: Path) -> tuple[np.ndarray, bytes, float]:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        extradata = bytes(stream.codec_context.extradata or b"")
        duration = float(container.duration or 0) / av.time_base
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)])
    return samples, extradata, duration


def decode_video(path: Path) -> tuple[list[int], bool, tuple[int, int], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        first_key = next(iter(container.demux(stream))).is_keyframe
        size = (stream.codec_context.width, stream.codec_context.height)
        duration = float(container.duration or 0) / av.time_base
    with av.open(str(path)) as container:
        counters = [read_counter(f) for f in container.decode(video=0)]
    return counters, first_key, size, duration


async def recording_status(srv: LiveServer, recording_id: str) -> str:
    return (await srv.recording(recording_id)).status


async def test_videosdk_track_recording_waits_for_track_splits_on_mute_and_stops(srv: LiveServer) -> None:
    room: MeetingRoom = await open_meeting(srv, "alice")
    alice = room.pid("alice")

    # Start before alice publishes anything: the seed's snippet for audio, a VideoSDK JWT for video.
    started = await asyncio.to_thread(start_track_recording, srv.base_url, srv.api_token, room.meeting.id, alice)
    assert started.status_code == 200, started.text
    audio_id = started.json()["recordingId"]
    assert started.json()["status"] == "INVOKED"
    async with httpx.AsyncClient(base_url=srv.base_url) as http:
        r = await http.post(
            "/v2/recordings/participant/track/start",
            json={"roomId": room.meeting.id, "participantId": "alice", "kind": "video", "fileFormat": "webm"},
            headers={"Authorization": f"Bearer {app_jwt(srv)}"},
        )
        assert r.status_code == 200, r.text
        video_id = r.json()["recordingId"]
        # Starting again is idempotent.
        again = await http.post(
            "/v2/recordings/participant/track/start",
            json={"roomId": room.meeting.id, "participantId": alice, "kind": "video"},
            headers=srv.headers,
        )
        assert again.status_code == 200 and again.json()["recordingId"] == video_id
    await asyncio.sleep(0.5)
    assert await recording_status(srv, audio_id) == "INVOKED"  # waiting for a track

    publisher = await publish(room, "alice")
    try:
        await wait_for(lambda: recording_status(srv, audio_id), 10, "audio RECORDING")
        await wait_for(lambda: _all_recording(srv, audio_id, video_id), 10, "both recordings RECORDING")
        await asyncio.sleep(2.0)
        # Mute both tracks for a second, then unmute: a second file each, in the same directory.
        for kind in ("audio", "video"):
            room.live.room.set_muted(alice, publisher.tracks[kind].id, True)
        muted_at = time.time()
        await asyncio.sleep(1.0)
        for kind in ("audio", "video"):
            room.live.room.set_muted(alice, publisher.tracks[kind].id, False)
        unmuted_at = time.time()
        await asyncio.sleep(2.0)
        stopped = await asyncio.to_thread(stop_track_recording, srv.base_url, srv.api_token, room.meeting.id, alice)
        stopped_at = time.time()
        assert stopped.status_code == 200, stopped.text
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            r = await http.post(
                "/v2/recordings/participant/track/stop",
                json={"roomId": room.meeting.id, "participantId": "alice", "kind": "video"},
                headers={"Authorization": app_jwt(srv)},
            )
            assert r.status_code == 200, r.text
            # Nothing is recording any more: stopping again is refused.
            r = await http.post(
                "/v2/recordings/participant/track/stop",
                json={"roomId": room.meeting.id, "participantId": alice, "kind": "video"},
                headers=srv.headers,
            )
            assert r.status_code == 409, r.text
    finally:
        await publisher.close()

    for rid in (audio_id, video_id):
        await wait_for(lambda rid=rid: _status_is(srv, rid, "UPLOADED"), 10, "UPLOADED")

    # --- audio: two segments, OpusHead, 440 Hz, durations match the unmuted spans ---
    audio = await srv.recording(audio_id)
    assert audio.kind == "track" and audio.started_time is not None and audio.stop_reason["reason"] == "API_CALL"
    assert audio.download_url is None  # a track recording's URLs are per file (the -stopped webhook)
    # Uploaded to the default (local) storage under the bucketDirPath; the local copies are gone.
    assert not list((srv.data_dir / "recordings" / audio_id).rglob("*.webm"))
    directory = srv.data_dir / "storage" / "s3path" / room.session_id / alice / "audio"
    manifest = load(directory)
    assert [s.status for s in manifest.segments] == ["complete", "complete"]
    files = await srv.files(audio_id)
    assert [f.path for f in files] == [f"{room.session_id}/{alice}/audio/{s.file}" for s in manifest.segments]
    assert all(f.status == "uploaded" and f.size > 0 for f in files)
    first, second = manifest.segments
    assert first.end_epoch_ms / 1000 == pytest.approx(muted_at, abs=0.3)
    assert second.start_epoch_ms / 1000 == pytest.approx(unmuted_at, abs=0.3)
    assert second.end_epoch_ms / 1000 == pytest.approx(stopped_at, abs=0.4)
    for segment in manifest.segments:
        path = directory / segment.file
        assert not needs_repair(path)
        samples, extradata, duration = decode_audio(path)
        assert extradata.startswith(b"OpusHead")
        assert len(samples) == segment.frames * 960  # every 20 ms packet written decodes
        assert duration == pytest.approx(segment.frames * 0.02, abs=0.03)
        assert duration == pytest.approx((segment.end_epoch_ms - segment.start_epoch_ms) / 1000, abs=0.1)
        assert dominant_frequency(samples[4800:]) == pytest.approx(440, abs=3)
    assert decode_audio(directory / first.file)[2] == pytest.approx(muted_at - first.start_epoch_ms / 1000, abs=0.3)

    # --- video: two segments, each starts on a keyframe, 320x240, the counters run on ---
    vdir = srv.data_dir / "storage" / srv.app_id / room.session_id / alice / "video"  # no bucketDirPath
    vmanifest = load(vdir)
    assert len(vmanifest.segments) == 2
    last = -1
    for segment in vmanifest.segments:
        counters, first_key, size, duration = decode_video(vdir / segment.file)
        assert first_key and size == (320, 240) == (segment.width, segment.height)
        assert len(counters) == segment.frames
        assert all(b > a for a, b in itertools.pairwise(counters)) and counters[0] > last
        assert duration == pytest.approx(segment.frames / 30, abs=0.15)
        last = counters[-1]
    gap = vmanifest.segments[1].start_epoch_ms - vmanifest.segments[0].end_epoch_ms
    assert 700 <= gap <= 1600

    # --- webhooks: exactly the seed's JSON, in order, to the request's webhookUrl ---
    events = [e for e in await srv.events() if e.event.startswith("participant-track-recording")]
    audio_events = [e for e in events if e.payload["data"]["kind"] == "audio"]
    assert [e.event for e in audio_events] == [
        "participant-track-recording-starting",
        "participant-track-recording-started",
        "participant-track-recording-stopping",
        "participant-track-recording-stopped",
    ]
    data = {"meetingId": room.meeting.id, "sessionId": room.session_id, "participantId": alice, "kind": "audio"}
    for event in audio_events[:3]:
        assert event.payload == {"webhookType": event.event, "data": data}
        assert event.target_url == "https://www.example.com/"
    stopped_event = audio_events[3].payload
    details = stopped_event["data"]["fileDetails"]
    assert stopped_event == {
        "webhookType": "participant-track-recording-stopped",
        "data": {**data, "fileDetails": details},
    }
    assert [d["filePath"] for d in details] == [
        f"s3path/{room.session_id}/{alice}/audio/{s.file}" for s in manifest.segments
    ]
    # fileUrl is a signed download URL of the server: fetch each file and decode it.
    async with httpx.AsyncClient() as http:
        for detail, segment in zip(details, manifest.segments, strict=True):
            assert detail["fileUrl"].startswith(f"{srv.base_url}/downloads/")
            r = await http.get(detail["fileUrl"])
            assert r.status_code == 200 and r.content == (directory / segment.file).read_bytes()
            with av.open(io.BytesIO(r.content)) as container:
                assert sum(1 for _ in container.decode(audio=0)) == segment.frames > 0
            tampered = await http.get(detail["fileUrl"].replace("sig=", "sig=0"))
            assert tampered.status_code == 403
    video_events = [e for e in events if e.payload["data"]["kind"] == "video"]
    assert len(video_events) == 4 and all(e.target_url is None for e in video_events)
    vdetails = video_events[3].payload["data"]["fileDetails"]
    assert [d["filePath"] for d in vdetails] == [
        f"{srv.app_id}/{room.session_id}/{alice}/video/{s.file}" for s in vmanifest.segments
    ]
    async with httpx.AsyncClient() as http:
        for detail in vdetails:
            r = await http.get(detail["fileUrl"])
            assert r.status_code == 200
            with av.open(io.BytesIO(r.content)) as container:
                assert sum(1 for _ in container.decode(video=0)) > 0

    # --- the RealtimeKit API lists both as track recordings ---
    async with AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0) as cf:
        listed = await cf.realtime_kit.recordings.get_recordings(srv.app_id, account_id=srv.account_id)
        assert {r.id for r in listed.data} == {audio_id, video_id}
        one = await cf.realtime_kit.recordings.get_one_recording(audio_id, account_id=srv.account_id, app_id=srv.app_id)
        assert one.data is not None and one.data.status == "UPLOADED" and one.data.session_id == room.session_id
        assert one.data.stop_reason is not None and one.data.stop_reason.reason == "API_CALL"
        assert one.data.file_size == sum(f.size for f in files)


async def _all_recording(srv: LiveServer, *ids: str) -> bool:
    return all([await recording_status(srv, i) == "RECORDING" for i in ids])


async def _status_is(srv: LiveServer, recording_id: str, status: str) -> bool:
    return await recording_status(srv, recording_id) == status


async def test_bad_requests_answer_with_a_message(srv: LiveServer) -> None:
    room = await open_meeting(srv, "bob")
    bob = room.pid("bob")
    body = {"roomId": room.meeting.id, "participantId": bob, "kind": "audio"}
    start = f"{srv.base_url}/v2/recordings/participant/track/start"
    stop = f"{srv.base_url}/v2/recordings/participant/track/stop"

    async with httpx.AsyncClient() as http:

        async def post(url: str, payload: dict[str, object], token: str | None = srv.api_token) -> httpx.Response:
            headers = {"Authorization": token} if token is not None else {}
            return await http.post(url, json=payload, headers=headers)

        def message(r: httpx.Response) -> str:
            return str(r.json()["error"]["message"])

        r = await post(start, {**body, "fileFormat": "mp4"})
        assert r.status_code == 400 and message(r) == "only webm is supported"
        r = await post(start, body, token="rt_not-a-token")
        assert r.status_code == 401 and message(r) == "invalid API token"
        r = await post(start, body, token=None)
        assert r.status_code == 401
        r = await post(start, body, token=app_jwt(srv, secret="not-the-app-secret-but-long-enough-for-hs256"))
        assert r.status_code == 401 and "signature" in message(r)
        r = await post(start, body, token=app_jwt(srv, exp=int(time.time()) - 10))
        assert r.status_code == 401 and "expired" in message(r)
        r = await post(start, body, token=jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256"))
        assert r.status_code == 401 and "apikey" in message(r)
        r = await post(start, {**body, "roomId": "no-such-room"})
        assert r.status_code == 404 and "room" in message(r)
        r = await post(start, {**body, "participantId": "nobody"})
        assert r.status_code == 404 and "participant" in message(r)
        r = await post(start, {**body, "kind": "hologram"})
        assert r.status_code == 400 and "kind" in message(r)
        r = await post(start, {**body, "bucketDirPath": "../../etc"})
        assert r.status_code == 400 and "bucketDirPath" in message(r)
        r = await post(stop, body)
        assert r.status_code == 409 and "no audio track recording" in message(r)

        # Another account's token sees no such room.
        other = await _other_account_token(srv)
        r = await post(start, body, token=other)
        assert r.status_code == 404

        # Nothing published, then stopped: the recording fails (nothing was recorded), with -failed.
        r = await post(start, body, token=app_jwt(srv))
        assert r.status_code == 200, r.text
        rid = r.json()["recordingId"]
        r = await post(stop, {**body, "participantId": "bob"})
        assert r.status_code == 200 and r.json()["status"] == "ERRORED"
    events = [e.event for e in await srv.events() if e.payload.get("data", {}).get("participantId") == bob]
    assert events == [
        "participant-track-recording-starting",
        "participant-track-recording-stopping",
        "participant-track-recording-failed",
    ]
    assert (await srv.recording(rid)).status == "ERRORED"


async def _other_account_token(srv: LiveServer) -> str:
    from roomtape.db.accounts import create_app_with_account

    async with srv.ctx.sessions() as db:
        creds = await create_app_with_account(db, "other")
        await db.commit()
    return creds.api_token


async def test_realtimekit_track_recording_records_every_participant(srv: LiveServer) -> None:
    room = await open_meeting(srv, "carol", "dave")
    carol = await publish(room, "carol", frequency=440.0)
    try:
        async with AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0) as cf:
            started = await cf.realtime_kit.recordings.start_track_recording(
                srv.app_id,
                account_id=srv.account_id,
                meeting_id=room.meeting.id,
                layers={"default": {"media_kind": "audio", "file_name_prefix": "x"}},
            )
            assert started.success and started.data is not None
            rid = started.data.recording.id
            assert started.data.recording.status == "INVOKED"
            await wait_for(lambda: _status_is(srv, rid, "RECORDING"), 10, "RECORDING")
            dave = await publish(room, "dave", frequency=660.0)  # a later publisher is recorded too
            try:
                await wait_for(lambda: _files_of(srv, rid, 2), 10, "both participants' files")
                await asyncio.sleep(1.5)
            finally:
                await dave.close()
            got = await cf.realtime_kit.recordings.get_one_recording(rid, account_id=srv.account_id, app_id=srv.app_id)
            assert got.data is not None and got.data.status == "RECORDING"
            listed = await cf.realtime_kit.recordings.get_recordings(
                srv.app_id, account_id=srv.account_id, meeting_id=room.meeting.id, status=["RECORDING"]
            )
            assert [r.id for r in listed.data] == [rid] and listed.data[0].meeting is not None
    finally:
        await carol.close()
    assert srv.ctx.recordings is not None
    await srv.ctx.recordings.stop_recording(rid, "API_CALL")
    await wait_for(lambda: _status_is(srv, rid, "UPLOADED"), 10, "UPLOADED")
    files = await srv.files(rid)
    by_participant = {f.participant_id: f for f in files}
    assert set(by_participant) == {room.pid("carol"), room.pid("dave")} and {f.kind for f in files} == {"audio"}
    for name, hz in (("carol", 440.0), ("dave", 660.0)):
        row = by_participant[room.pid(name)]
        assert row.status == "uploaded"
        samples, extradata, _ = decode_audio(srv.data_dir / "storage" / rid / row.path)
        assert extradata.startswith(b"OpusHead") and len(samples) == row.frames * 960
        assert dominant_frequency(samples[4800:]) == pytest.approx(hz, abs=3)
    # RealtimeKit-started recordings send no VideoSDK webhooks.
    assert not [e for e in await srv.events() if e.event.startswith("participant-track")]


async def _files_of(srv: LiveServer, recording_id: str, participants: int) -> bool:
    return len({f.participant_id for f in await srv.files(recording_id)}) >= participants


async def test_room_closing_stops_recordings_with_all_peers_left(srv: LiveServer) -> None:
    room = await open_meeting(srv, "erin")
    publisher = await publish(room, "erin")
    try:
        async with httpx.AsyncClient() as http:
            r = await http.post(
                f"{srv.base_url}/v2/recordings/participant/track/start",
                json={"roomId": room.meeting.id, "participantId": "erin", "kind": "audio"},
                headers=srv.headers,
            )
            rid = r.json()["recordingId"]
        await wait_for(lambda: _status_is(srv, rid, "RECORDING"), 10, "RECORDING")
        await asyncio.sleep(1.0)
        await srv.ctx.media.close(room.meeting.id)
    finally:
        await publisher.close()
    await wait_for(lambda: _status_is(srv, rid, "UPLOADED"), 10, "UPLOADED")
    recording: Recording = await srv.recording(rid)
    assert recording.stop_reason is not None and recording.stop_reason["reason"] == "ALL_PEERS_LEFT"
    (row,) = await srv.files(rid)
    assert row.status == "uploaded" and row.frames >= 40
