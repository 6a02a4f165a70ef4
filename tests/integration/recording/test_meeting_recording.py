"""Meeting (composite) recording end to end: real aiortc publishers → track files → composite MP4 → upload,
driven by the Cloudflare SDK (RealtimeKit) and the seed's VideoSDK snippets on an in-process server."""

from __future__ import annotations

import asyncio
import io
import os
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import av
import httpx
import numpy as np
import pytest
from cloudflare import AsyncCloudflare, BadRequestError, ConflictError, NotFoundError
from tests.integration.recording.recording_server import (
    LiveServer,
    MeetingRoom,
    Publisher,
    live_server,
    open_meeting,
    publish,
    wait_for,
)

from roomtape.db import lifecycle
from roomtape.db.models import Meeting, Participant, Recording

pytestmark = pytest.mark.timeout(180)

SMALL_VIDEO = {"codec": "H264", "width": 320, "height": 240}


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path) as server:
        yield server


def cloudflare(srv: LiveServer) -> AsyncCloudflare:
    return AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0)


async def status_of(srv: LiveServer, recording_id: str) -> str:
    return (await srv.recording(recording_id)).status


def tone_power(samples: np.ndarray, frequency: float, rate: int = 48000) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    freqs = np.fft.rfftfreq(len(samples), 1 / rate)
    band = (freqs > frequency - 15) & (freqs < frequency + 15)
    return float(spectrum[band].max() / (np.median(spectrum) + 1e-9))


def decode_composite(data: bytes) -> dict[str, Any]:
    with av.open(io.BytesIO(data)) as container:
        duration = float(container.duration or 0) / av.time_base
        video = container.streams.video[0]
        audio = container.streams.audio[0]
        info: dict[str, Any] = {
            "duration": duration,
            "video_codec": video.codec_context.name,
            "audio_codec": audio.codec_context.name,
            "size": (video.codec_context.width, video.codec_context.height),
        }
    with av.open(io.BytesIO(data)) as container:
        frames = [f.to_ndarray(format="gray") for f in container.decode(video=0)]
    with av.open(io.BytesIO(data)) as container:
        pcm = np.concatenate(
            [f.to_ndarray().reshape(f.to_ndarray().shape[0], -1)[0] for f in container.decode(audio=0)]
        )
    info["frames"] = frames
    info["pcm"] = pcm.astype(np.float64)
    return info


async def test_pause_resume_stop_yields_one_continuous_uploaded_mp4(srv: LiveServer) -> None:
    room = await open_meeting(srv, "alice", "bob")
    pubs: list[Publisher] = [await publish(room, "alice", 440.0), await publish(room, "bob", 1000.0)]
    try:
        async with cloudflare(srv) as cf:
            started = await cf.realtime_kit.recordings.start_recordings(
                srv.app_id,
                account_id=srv.account_id,
                meeting_id=room.meeting.id,
                video_config=SMALL_VIDEO,  # type: ignore[arg-type]
                audio_config={"channel": "stereo", "codec": "AAC", "export_file": True},
                file_name_prefix="weekly",
                max_seconds=600,
            )
            assert started.data is not None
            rid = started.data.id
            assert started.data.status in ("INVOKED", "RECORDING")
            assert started.data.output_file_name == f"weekly_{rid}.mp4"
            assert started.data.start_reason is not None and started.data.start_reason.reason == "API_CALL"

            # A second start on the same meeting is refused; allow_multiple_recordings lets it through.
            with pytest.raises(ConflictError):
                await cf.realtime_kit.recordings.start_recordings(
                    srv.app_id, account_id=srv.account_id, meeting_id=room.meeting.id
                )

            await wait_for(lambda: _is(srv, rid, "RECORDING"), 15, "RECORDING")
            active = await cf.realtime_kit.recordings.get_active_recordings(
                room.meeting.id, account_id=srv.account_id, app_id=srv.app_id
            )
            assert active.data.id == rid
            await asyncio.sleep(2.0)
            paused = await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=srv.account_id, app_id=srv.app_id, action="pause"
            )
            assert paused.data is not None and paused.data.status == "PAUSED"
            with pytest.raises(ConflictError):  # pausing twice
                await cf.realtime_kit.recordings.pause_resume_stop_recording(
                    rid, account_id=srv.account_id, app_id=srv.app_id, action="pause"
                )
            await asyncio.sleep(2.0)
            resumed = await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=srv.account_id, app_id=srv.app_id, action="resume"
            )
            assert resumed.data is not None and resumed.data.status == "RECORDING"
            await asyncio.sleep(2.0)
            stopped = await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=srv.account_id, app_id=srv.app_id, action="stop"
            )
            assert stopped.data is not None and stopped.data.status in ("UPLOADING", "UPLOADED")
            await wait_for(lambda: _is(srv, rid, "UPLOADED", "ERRORED"), 90, "UPLOADED")
            one = await cf.realtime_kit.recordings.get_one_recording(rid, account_id=srv.account_id, app_id=srv.app_id)
            data = one.data
            assert data.status == "UPLOADED", (await srv.recording(rid)).error
            assert data.stop_reason is not None and data.stop_reason.reason == "API_CALL"
            assert data.download_url and data.audio_download_url and data.download_url_expiry
            assert data.started_time is not None and data.stopped_time is not None

            listed = await cf.realtime_kit.recordings.get_recordings(
                srv.app_id,
                account_id=srv.account_id,
                meeting_id=room.meeting.id,
                status=["UPLOADED"],
                sort_order="ASC",
            )
            assert [r.id for r in listed.data] == [rid]
    finally:
        for pub in pubs:
            await pub.close()

    row = await srv.recording(rid)
    assert row.started_time is not None and row.stopped_time is not None
    expected = (row.stopped_time - row.started_time).total_seconds() - row.paused_seconds
    # 2 s paused, 2 s + 2 s recorded around the pause; sleeps stretch on a busy machine (5 s seen at load 20).
    assert 1.5 <= row.paused_seconds <= 15.0
    assert 3.0 <= expected <= 30.0
    assert row.recording_duration is not None and abs(row.recording_duration - expected) <= 0.5 + 1e-6
    assert row.config["progress"]["fraction"] == 1.0

    async with httpx.AsyncClient() as http:
        got = await http.get(str(data.download_url))
        assert got.status_code == 200
        composite = decode_composite(got.content)
        audio_file = await http.get(str(data.audio_download_url))
        assert audio_file.status_code == 200 and len(audio_file.content) > 1000
    assert composite["video_codec"] == "h264" and composite["audio_codec"] == "aac"
    assert composite["size"] == (320, 240)
    error = composite["duration"] - expected
    print(f"composite duration {composite['duration']:.3f}s, expected {expected:.3f}s, error {error * 1000:+.0f} ms")
    assert abs(error) <= 0.3
    # Both participants' tones are in the mix, and both tiles carry a picture (counter blocks: bright pixels).
    assert tone_power(composite["pcm"], 440.0) > 20 and tone_power(composite["pcm"], 1000.0) > 20
    middle = composite["frames"][len(composite["frames"]) // 2]
    left, right = middle[:, : middle.shape[1] // 2], middle[:, middle.shape[1] // 2 :]
    assert (left > 128).any() and (right > 128).any()

    # Rendered again with another layout and format (track files come back from the storage first).
    async with httpx.AsyncClient(base_url=srv.base_url, headers=srv.headers, timeout=60) as http:
        again = await http.post(
            f"/accounts/{srv.account_id}/realtime/kit/{srv.app_id}/recordings/{rid}/compose",
            json={"layout": "active_speaker", "format": "webm"},
        )
        assert again.status_code == 202, again.text
        assert again.json()["data"]["output_file_name"] == f"weekly_{rid}.webm"
        assert again.json()["data"]["download_url"] is None  # never the old file's URL beside the new name
    await wait_for(lambda: _is(srv, rid, "UPLOADED", "ERRORED"), 60, "UPLOADED again")
    row = await srv.recording(rid)
    assert row.status == "UPLOADED", row.error
    assert row.download_url is not None and f"weekly_{rid}.webm" in row.download_url
    async with httpx.AsyncClient() as http:
        got = await http.get(str(row.download_url))
    with av.open(io.BytesIO(got.content)) as container:
        assert container.streams.video[0].codec_context.name == "vp8"
        assert abs(float(container.duration or 0) / av.time_base - expected) <= 0.3

    events = await srv.events("recording.statusUpdate")
    statuses = [e.payload["recording"]["status"] for e in events if e.payload["recording"]["id"] == rid]
    for wanted in ("INVOKED", "RECORDING", "PAUSED", "UPLOADING", "UPLOADED"):
        assert wanted in statuses, statuses


async def _is(srv: LiveServer, rid: str, *statuses: str) -> bool:
    return await status_of(srv, rid) in statuses


async def test_bad_input_changes_nothing(srv: LiveServer) -> None:
    room = await open_meeting(srv, "alice")
    async with cloudflare(srv) as cf:
        with pytest.raises(BadRequestError):
            await cf.realtime_kit.recordings.start_recordings(
                srv.app_id, account_id=srv.account_id, meeting_id=room.meeting.id, max_seconds=30
            )
        with pytest.raises(NotFoundError):
            await cf.realtime_kit.recordings.start_recordings(
                srv.app_id, account_id=srv.account_id, meeting_id="00000000-0000-0000-0000-000000000000"
            )
        with pytest.raises(NotFoundError):
            await cf.realtime_kit.recordings.get_active_recordings(
                room.meeting.id, account_id=srv.account_id, app_id=srv.app_id
            )
    async with httpx.AsyncClient(base_url=srv.base_url, headers=srv.headers) as http:
        bad = await http.put(
            f"/accounts/{srv.account_id}/realtime/kit/{srv.app_id}/recordings/00000000-0000-0000-0000-000000000000",
            json={"action": "explode"},
        )
        assert bad.status_code in (400, 422)
    assert await srv.rows(Recording) == []


async def test_record_on_start_and_all_peers_left(srv: LiveServer) -> None:
    async with srv.ctx.sessions() as db:
        # The meeting's recording_config is what a record_on_start recording is made with.
        config = {
            "audio_config": {"codec": "MP3", "channel": "mono"},
            "video_config": {"export_file": False},
            "file_name_prefix": "standup",
        }
        meeting = Meeting(
            app_id=srv.app_id, title="auto", status="ACTIVE", record_on_start=True, recording_config=config
        )
        db.add(meeting)
        await db.flush()
        p = Participant(
            meeting_id=meeting.id, custom_participant_id="carol", preset_name="group_call_host", name="carol"
        )
        db.add(p)
        await db.flush()
        session, _ = await lifecycle.participant_joined(db, meeting, p)
        await db.commit()
    live = srv.ctx.media.open(meeting.id, session.id, srv.app_id)
    live.room.join(p.id, name="carol")
    room = MeetingRoom(meeting=meeting, participants={"carol": p}, live=live, session_id=session.id)

    async def one() -> list[Recording]:
        # The row is written in two steps (its tracks' recording, then made composite): wait for the second.
        return await srv.rows(Recording, Recording.meeting_id == meeting.id, Recording.kind == "composite")

    await wait_for(lambda: _has(one), 30, "record_on_start recording")
    rec = (await one())[0]
    assert rec.kind == "composite" and rec.start_reason == {"reason": "RECORD_ON_START", "caller": None}
    pub = await publish(room, "carol", 440.0)
    try:
        await wait_for(lambda: _is(srv, rec.id, "RECORDING"), 15, "RECORDING")
        await asyncio.sleep(1.0)
    finally:
        await pub.close()
    await srv.ctx.media.close(meeting.id)  # the room closes after the keep-alive: everyone has left
    await wait_for(lambda: _is(srv, rec.id, "UPLOADED", "ERRORED"), 60, "UPLOADED")
    done = await srv.recording(rec.id)
    assert done.status == "UPLOADED", done.error
    assert done.stop_reason is not None and done.stop_reason["reason"] == "ALL_PEERS_LEFT"
    assert done.download_url
    assert done.output_file_name is not None and done.output_file_name.startswith("standup_")
    assert done.output_file_name.endswith(".mp3"), done.output_file_name


async def _has(fetch: Any) -> bool:
    return bool(await fetch())


# The seed's snippets (seed 000 "Meeting Recording"), with only the URL and the token changed.
async def start_meeting_recording(base_url: str, token: str, room_id: str) -> dict[str, Any]:
    url = f"{base_url}/v2/recordings/start"
    headers = {"Authorization": token, "Content-Type": "application/json"}
    payload = {"roomId": room_id, "config": {"mode": "audio"}, "webhookUrl": "https://www.example.com/"}
    async with aiohttp.ClientSession() as session, session.post(url, json=payload, headers=headers) as response:
        if response.status != 200:
            text = await response.text()
            raise Exception(f"Failed to start meeting recording: {response.status}, {text}")
        result: dict[str, Any] = await response.json()
        return result


async def stop_meeting_recording(base_url: str, token: str, room_id: str) -> dict[str, Any]:
    url = f"{base_url}/v2/recordings/end"
    headers = {"Authorization": token, "Content-Type": "application/json"}
    payload = {"roomId": room_id}
    async with aiohttp.ClientSession() as session, session.post(url, json=payload, headers=headers) as response:
        if response.status != 200:
            text = await response.text()
            raise Exception(f"Failed to stop meeting recording: {response.status}, {text}")
        result: dict[str, Any] = await response.json()
        return result


async def test_videosdk_start_end_snippets(srv: LiveServer) -> None:
    room = await open_meeting(srv, "dave")
    pub = await publish(room, "dave", 440.0)
    try:
        started = await start_meeting_recording(srv.base_url, srv.api_token, room.meeting.id)
        rid = started["recordingId"]
        await wait_for(lambda: _is(srv, rid, "RECORDING"), 15, "RECORDING")
        t0 = time.monotonic()
        await asyncio.sleep(1.5)
        ended = await stop_meeting_recording(srv.base_url, srv.api_token, room.meeting.id)
        assert ended["recordingId"] == rid and time.monotonic() - t0 < 10
        with pytest.raises(Exception, match="409"):
            await stop_meeting_recording(srv.base_url, srv.api_token, room.meeting.id)
    finally:
        await pub.close()
    await wait_for(lambda: _is(srv, rid, "UPLOADED", "ERRORED"), 60, "UPLOADED")
    done = await srv.recording(rid)
    assert done.status == "UPLOADED", done.error
    assert done.output_file_name.endswith(".mp3")
    await wait_for(lambda: srv.events("recording-stopped"), 10, "recording-stopped")
    types = [e.payload["webhookType"] for e in await srv.events() if e.event.startswith("recording-")]
    assert types == ["recording-starting", "recording-started", "recording-stopping", "recording-stopped"]
    stopped = (await srv.events("recording-stopped"))[0]
    assert stopped.target_url == "https://www.example.com/"
    assert stopped.payload["data"]["meetingId"] == room.meeting.id and stopped.payload["data"]["fileUrl"]

    # `roomtape compose RECORDING_ID --layout … --format …` renders it again (here: Ogg/Opus).
    proc = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).with_name("roomtape")),
        "compose",
        rid,
        "--layout",
        "audio_only",
        "--format",
        "ogg",
        "--data-dir",
        str(srv.data_dir),
        "--database-url",
        f"sqlite+aiosqlite:///{srv.data_dir / 'roomtape.db'}",
        env={**os.environ, "ROOMTAPE_SECRET_KEY": "test-secret-key"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().startswith("UPLOADED") and ".ogg" in out.decode()
    again = await srv.recording(rid)
    assert again.output_file_name.endswith(".ogg") and again.download_url
