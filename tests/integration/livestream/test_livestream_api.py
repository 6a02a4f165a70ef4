"""The RealtimeKit livestreams API through the real Cloudflare SDK, against a real server and real publishers.

- start (HLS + an RTMP push to Debian's nginx-rtmp) → ``livestreaming.statusUpdate`` LIVE delivered to a
  registered webhook → the playlist and its segments fetched through the signed playback URL and decoded
  (both tiles flash, both publishers' beeps in the audio) → the push pulled back from nginx and decoded →
  stop → IDLE webhook; list, sessions, session details and analytics show it; on SQLite and PostgreSQL;
- tampered, foreign or expired playback tokens are refused (403), unknown files are 404;
- bad input (a private RTMP address, an unreachable one, a non-RTMP URL, an odd size, nobody in the meeting,
  a second start) → a clear 4xx and nothing started (no row, no tap, no HLS directory);
- another app's meeting and livestream are not found (404);
- ``live_stream_on_start``: the stream starts when the room opens, pushes to the meeting's
  ``live_streaming_config.rtmp_url``, and ends IDLE when the session ends; with a private ``rtmp_url`` it
  starts nothing and an ERRORED livestream says why;
- a render process that dies mid-stream: ERRORED with the reason (session and webhook), nothing left running,
  and the meeting can stream again.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cloudflare import AsyncCloudflare, BadRequestError, ConflictError, NotFoundError
from tests.conftest import database_url_for, free_port
from tests.integration.livestream.rtmp_server import RtmpServer
from tests.integration.livestream.test_livestream_engine import BEEPS, Media, decode, publish_flash
from tests.integration.recording.compose_media import beep_onsets, onsets
from tests.integration.recording.recording_server import LiveServer, live_server, open_meeting, wait_for
from tests.integration.recording.test_composite_sync import paired
from tests.integration.webhooks.receiver import Receiver

from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import Livestream, Meeting
from roomtape.livestream.playback import HlsSigner

pytestmark = pytest.mark.timeout(300)

EVENT = "livestreaming.statusUpdate"


@pytest.fixture(params=["sqlite", "postgres"])
async def srv_db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LiveServer]:
    url = database_url_for(request.param, tmp_path, request)
    async with live_server(tmp_path / "server", database_url=url) as server:
        yield server


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server") as server:
        yield server


def cloudflare(srv: LiveServer, token: str | None = None) -> AsyncCloudflare:
    return AsyncCloudflare(api_token=token or srv.api_token, base_url=srv.base_url, max_retries=0)


def ids(srv: LiveServer) -> dict[str, str]:
    return {"account_id": srv.account_id, "app_id": srv.app_id}


def statuses(receiver: Receiver, livestream_id: str) -> list[str]:
    found = []
    for hit in receiver.received:
        body = json.loads(hit.body)
        if body.get("event") == EVENT and body["livestream"]["id"] == livestream_id:
            found.append(body["livestream"]["status"])
    return found


def listed_segments(playlist: str) -> list[str]:
    return re.findall(r"^(seg\d+\.ts)$", playlist, re.MULTILINE)


def check_content(media: Media) -> None:
    """Both tiles flash once a second and both publishers' beeps are in the audio.

    A/V and inter-participant sync through the live render are the engine's test
    (``test_livestream_engine.check_sync``); here the offsets are printed only.
    """
    seconds = media.video_seconds
    flashes = {tile: onsets(luma > 128, media.frame_times) for tile, luma in media.tiles.items()}
    for tile, found in flashes.items():
        assert len(found) >= seconds - 2, (tile, found, seconds)
    for name, (_, freq) in BEEPS.items():
        beeps = [t + media.audio_start for t in beep_onsets(media.samples, media.rate, freq)]
        assert len(beeps) >= seconds - 2, (name, beeps, seconds)
        best = max(flashes.values(), key=lambda f: len(paired(f, beeps)))
        print(f"{name}: flash - beep in ms: {[round(d * 1000) for d in paired(best, beeps)]}")


async def fetch_hls(http: httpx.AsyncClient, playback_url: str, segments: int, into: Path) -> Media:
    """Wait until the playlist lists ``segments`` segments, fetch them next to it, decode them as one stream."""
    deadline = time.monotonic() + 60
    while True:
        got = await http.get(playback_url)
        assert got.status_code == 200, got.text
        assert got.headers["content-type"] == "application/vnd.apple.mpegurl"
        names = listed_segments(got.text)
        if len(names) >= segments:
            break
        assert time.monotonic() < deadline, got.text
        await asyncio.sleep(0.5)
    base = playback_url.rsplit("/", 1)[0]
    data = b""
    for name in names:
        seg = await http.get(f"{base}/{name}")  # relative to the playlist: the same token
        assert seg.status_code == 200 and seg.headers["content-type"] == "video/mp2t"
        data += seg.content
    await asyncio.to_thread(into.write_bytes, data)
    return await asyncio.to_thread(decode, str(into))


async def test_livestream_through_the_sdk_hls_rtmp_and_webhooks(
    srv_db: LiveServer, rtmp: RtmpServer, tmp_path: Path
) -> None:
    srv = srv_db
    room = await open_meeting(srv, "alice", "bob")
    epoch = math.floor(time.time()) + 1.0
    pcs = [await publish_flash(room, name, epoch) for name in ("alice", "bob")]
    receiver = Receiver(free_port())
    await receiver.start()
    try:
        async with cloudflare(srv) as cf, httpx.AsyncClient(timeout=30) as http:
            await cf.realtime_kit.webhooks.create_webhook(
                srv.app_id,
                account_id=srv.account_id,
                name="livestreams",
                url=f"http://127.0.0.1:{receiver.port}/hook",
                events=[EVENT],
            )
            ls = cf.realtime_kit.livestreams
            await asyncio.sleep(1.5)  # both publishers connected and sending
            started = await ls.start_livestreaming_a_meeting(
                room.meeting.id,
                **ids(srv),
                name="weekly",
                video_config={"width": 640, "height": 360},
                extra_body={"rtmp_url": rtmp.url("secret-key")},
            )
            assert started.success and started.data is not None
            lid = str(started.data.id)
            assert started.data.status == "INVOKED"
            assert started.data.ingest_server == f"rtmp://127.0.0.1:{rtmp.port}/live"  # the key is not shown
            assert started.data.stream_key is None
            playback = str(started.data.playback_url)
            assert playback.startswith(f"{srv.base_url}/v1/livestreams/{lid}/hls/")
            assert playback.endswith("/index.m3u8")

            with pytest.raises(ConflictError, match="live-streamed already"):
                await ls.start_livestreaming_a_meeting(room.meeting.id, **ids(srv))

            await wait_for(lambda: "LIVE" in statuses(receiver, lid), 60, "the LIVE webhook")
            assert statuses(receiver, lid)[:2] == ["INVOKED", "LIVE"]
            hit = next(h for h in receiver.received if json.loads(h.body)["livestream"]["status"] == "LIVE")
            assert hit.headers["webhook-id"] and hit.headers["webhook-signature"]
            body = json.loads(hit.body)
            assert body["meeting"] == {"id": room.meeting.id, "sessionId": room.session_id}
            assert body["livestream"]["startedTime"] and body["livestream"]["playbackUrl"]
            assert "secret-key" not in hit.body.decode()

            active = await ls.get_meeting_active_livestreams(room.meeting.id, **ids(srv))
            assert active.data is not None and active.data.id == lid and active.data.status == "LIVE"
            assert active.data.name == "weekly" and active.data.meeting_id == room.meeting.id
            current = await ls.get_active_livestreams_for_livestream_id(lid, **ids(srv))
            assert current.data is not None and current.data.session is not None
            assert current.data.session.started_time is not None and current.data.session.stopped_time is None

            # HLS through the signed URL: three 2 s segments, both tiles, audio, flash and beep within a frame.
            media = await fetch_hls(http, playback, 3, tmp_path / "live.ts")
            # Keyframes exactly every 2 s: the flashes (scene cuts) do not make longer segments.
            durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", (await http.get(playback)).text)]
            assert durations and all(abs(d - 2.0) < 0.05 for d in durations), durations
            assert media.codecs == ("h264", "aac") and media.size == (640, 360)
            assert media.video_seconds >= 4.0
            check_content(media)

            # Tokens: tampered, another livestream's, expired → 403; other files → 404.
            token = playback.rsplit("/", 2)[1]
            exp, sig = token.split(".")
            forged = playback.replace(token, f"{int(exp) + 1}.{sig}")
            assert (await http.get(forged)).status_code == 403
            other = playback.replace(f"/livestreams/{lid}/", "/livestreams/00000000-0000-4000-8000-000000000000/")
            assert (await http.get(other)).status_code == 403
            expired, _ = HlsSigner("test-secret-key", srv.base_url).token(lid, 10, now=time.time() - 3600)
            assert (await http.get(playback.replace(token, expired))).status_code == 403
            for name in ("seg99999.ts", "..%2Froomtape.db", "index.m3u8.tmp", "nginx.conf"):
                assert (await http.get(playback.rsplit("/", 1)[0] + "/" + name)).status_code == 404, name

            # The push, pulled back from nginx: both tiles and audio.
            await wait_for(lambda: (srv.ctx.livestreams.rtmp_state(lid) or {}).get("state") == "live", 30, "push")  # type: ignore[union-attr]
            pulled = await asyncio.to_thread(decode, rtmp.url("secret-key"), 4.0)
            assert pulled.codecs == ("h264", "aac") and pulled.size == (640, 360)
            check_content(pulled)
            shown = await ls.get_meeting_active_livestreams(room.meeting.id, **ids(srv))
            assert shown.to_dict()["data"]["rtmp"]["state"] == "live"

            stopped = await ls.stop_livestreaming_a_meeting(room.meeting.id, **ids(srv))
            assert stopped.data is not None and stopped.data.message == "livestream stopped"
            await wait_for(lambda: "IDLE" in statuses(receiver, lid), 30, "the IDLE webhook")
            assert statuses(receiver, lid) == ["INVOKED", "LIVE", "IDLE"]
            with pytest.raises(NotFoundError):
                await ls.stop_livestreaming_a_meeting(room.meeting.id, **ids(srv))
            with pytest.raises(NotFoundError):
                await ls.get_meeting_active_livestreams(room.meeting.id, **ids(srv))
            with pytest.raises(NotFoundError):
                await ls.get_active_livestreams_for_livestream_id(lid, **ids(srv))
            ended = await http.get(playback)
            assert ended.status_code == 200 and "#EXT-X-ENDLIST" in ended.text

            listed = await ls.get_all_livestreams(srv.app_id, account_id=srv.account_id, status="IDLE")
            assert [x.id for x in listed.data] == [lid]  # type: ignore[union-attr]
            assert listed.paging["total_count"] == 1  # type: ignore[attr-defined]
            assert (await ls.get_all_livestreams(srv.app_id, account_id=srv.account_id, status="LIVE")).data == []
            assert (
                await ls.get_all_livestreams(srv.app_id, account_id=srv.account_id, exclude_meetings=True)
            ).data == []
            before = await ls.get_all_livestreams(
                srv.app_id, account_id=srv.account_id, end_time="2020-01-01T00:00:00Z"
            )
            assert before.data == []

            runs = await ls.get_livestream_session_for_livestream_id(lid, **ids(srv))
            assert runs.data is not None and runs.data.livestream is not None and runs.data.session is not None
            assert runs.data.livestream.status == "IDLE" and runs.data.paging is not None
            assert runs.data.paging.total_count == 1
            run = runs.data.session
            assert run.started_time and run.stopped_time and run.livestream_id == lid
            assert run.ingest_seconds is not None and run.ingest_seconds > 4.0
            assert run.viewer_seconds is not None and run.viewer_seconds >= 4.0  # the segments fetched above
            details = await ls.get_livestream_session_details_for_session_id(str(run.id), **ids(srv))
            assert details.data is not None and details.data.livestream_id == lid

            overall = await ls.get_livestream_analytics_complete(srv.app_id, account_id=srv.account_id)
            assert overall.data is not None and overall.data.count == 1
            assert overall.data.total_ingest_seconds is not None and overall.data.total_ingest_seconds >= 4
            assert overall.data.total_viewer_seconds is not None and overall.data.total_viewer_seconds >= 4
            daywise = await ls.get_livestream_analytics_daywise(
                srv.app_id, account_id=srv.account_id, start_time=int(time.time()) - 3600
            )
            assert daywise.data is not None and [d.count for d in daywise.data] == [1]
    finally:
        for pc in pcs:
            await pc.close()
        await receiver.stop()
    assert not (srv.data_dir / "livestreams" / lid).exists()  # the tap's files are gone
    assert not srv.ctx.recordings.tapping(lid)  # type: ignore[union-attr]


async def nothing_started(srv: LiveServer, meeting_id: str) -> None:
    assert srv.ctx.livestreams is not None and srv.ctx.livestreams.active(meeting_id) is None
    assert await srv.rows(Livestream) == []
    assert not any((srv.data_dir / "livestreams").glob("*"))
    assert not any((srv.data_dir / "hls").glob("*"))


async def test_bad_input_starts_nothing_and_apps_are_isolated(srv: LiveServer, rtmp: RtmpServer) -> None:
    room = await open_meeting(srv, "alice")
    closed = free_port()
    async with cloudflare(srv) as cf:
        ls = cf.realtime_kit.livestreams

        async def start(**body: Any) -> Any:
            return await ls.start_livestreaming_a_meeting(room.meeting.id, **ids(srv), extra_body=body)

        with pytest.raises(BadRequestError, match="private, loopback or link-local"):
            await start(rtmp_url="rtmp://10.1.2.3/live/key")
        with pytest.raises(BadRequestError, match="private, loopback or link-local"):
            await start(rtmp_url="rtmps://[fd00::1]:443/live/key")
        with pytest.raises(BadRequestError, match=rf"127\.0\.0\.1:{closed} is unreachable"):
            await start(rtmp_url=f"rtmp://127.0.0.1:{closed}/live/key")
        with pytest.raises(BadRequestError, match="rtmp:// or rtmps://"):
            await start(rtmp_url="http://127.0.0.1/live")
        with pytest.raises(BadRequestError, match="even"):
            await start(video_config={"width": 641, "height": 360})
        with pytest.raises(BadRequestError):
            await start(video_config={"width": 8, "height": 360})
        async with srv.ctx.sessions() as db:
            empty = Meeting(app_id=srv.app_id, title="nobody here", status="ACTIVE")
            db.add(empty)
            await db.commit()
        with pytest.raises(ConflictError, match="no live session"):
            await ls.start_livestreaming_a_meeting(empty.id, **ids(srv))
        with pytest.raises(NotFoundError):
            await ls.start_livestreaming_a_meeting("no-such-meeting", **ids(srv))
        await nothing_started(srv, room.meeting.id)

        # A meeting's own RTMP URL (for live_stream_on_start) is checked when it is saved: 400, nothing saved.
        meetings = cf.realtime_kit.meetings
        before = sorted(m.id for m in await srv.rows(Meeting))
        for url, message in [
            ("rtmp://192.168.1.10/live/key", "private, loopback or link-local"),
            ("https://example.com/live", "rtmp:// or rtmps://"),
        ]:
            config: Any = {"live_streaming_config": {"rtmp_url": url}}
            with pytest.raises(BadRequestError, match=message):
                await meetings.create(srv.app_id, account_id=srv.account_id, title="x", recording_config=config)
            with pytest.raises(BadRequestError, match=message):
                await meetings.update_meeting_by_id(room.meeting.id, **ids(srv), recording_config=config)
        assert sorted(m.id for m in await srv.rows(Meeting)) == before
        (kept,) = await srv.rows(Meeting, Meeting.id == room.meeting.id)
        assert kept.recording_config is None
        good: Any = {"live_streaming_config": {"rtmp_url": rtmp.url("key")}}
        made = await meetings.create(srv.app_id, account_id=srv.account_id, title="ok", recording_config=good)
        assert made.data is not None

        started = await start(rtmp_url=rtmp.url("one"), video_config={"width": 320, "height": 180})
        lid = str(started.data.id)
        with pytest.raises(ConflictError, match="live-streamed already"):
            await start(video_config={"width": 320, "height": 180})
        listed = await ls.get_all_livestreams(srv.app_id, account_id=srv.account_id)
        assert [x.id for x in listed.data] == [lid]  # type: ignore[union-attr]

        # Another account's app sees none of it.
        async with srv.ctx.sessions() as db:
            other = await create_app_with_account(db, "other")
            await db.commit()
        async with cloudflare(srv, other.api_token) as theirs:
            tls = theirs.realtime_kit.livestreams
            with pytest.raises(NotFoundError):  # this app's path with their token
                await tls.get_all_livestreams(srv.app_id, account_id=srv.account_id)
            with pytest.raises(NotFoundError):
                await tls.get_livestream_session_for_livestream_id(lid, **ids(srv))
            own = {"account_id": other.account_id, "app_id": other.app_id}
            with pytest.raises(NotFoundError):
                await tls.get_livestream_session_for_livestream_id(lid, **own)
            with pytest.raises(NotFoundError):
                await tls.stop_livestreaming_a_meeting(room.meeting.id, **own)
            with pytest.raises(NotFoundError):
                await tls.start_livestreaming_a_meeting(room.meeting.id, **own)
            with pytest.raises(NotFoundError):
                await tls.get_meeting_active_livestreams(room.meeting.id, **own)
            assert (await tls.get_all_livestreams(other.app_id, account_id=other.account_id)).data == []
        assert srv.ctx.livestreams is not None and srv.ctx.livestreams.active(room.meeting.id) == lid
        await ls.stop_livestreaming_a_meeting(room.meeting.id, **ids(srv))
        assert srv.ctx.livestreams.active(room.meeting.id) is None


async def test_live_stream_on_start_streams_from_the_room_opening(srv: LiveServer, rtmp: RtmpServer) -> None:
    room = await open_meeting(
        srv,
        "alice",
        live_stream_on_start=True,
        recording_config={
            "video_config": {"width": 320, "height": 180},
            "live_streaming_config": {"rtmp_url": rtmp.url("auto")},
        },
    )

    async def row() -> Livestream | None:
        rows = await srv.rows(Livestream)
        return rows[0] if rows else None

    await wait_for(row, 20, "a livestream row")
    first = await row()
    assert first is not None and first.start_reason == "LIVE_STREAM_ON_START" and first.width == 320
    assert first.ingest_server == f"rtmp://127.0.0.1:{rtmp.port}/live"
    engine = srv.ctx.livestreams
    assert engine is not None
    await wait_for(lambda: (engine.rtmp_state(first.id) or {}).get("state") == "live", 40, "the push")

    async def status() -> str | None:
        got = await row()
        return got.status if got is not None else None

    await wait_for(lambda: _eq(status(), "LIVE"), 30, "LIVE")
    await srv.ctx.media.close(room.meeting.id)  # the session ends
    await wait_for(lambda: _eq(status(), "IDLE"), 60, "IDLE")
    events = [e.payload["livestream"]["status"] for e in await srv.events(EVENT)]
    assert events == ["INVOKED", "LIVE", "IDLE"]


async def test_live_stream_on_start_with_a_private_rtmp_url_is_errored_not_started(srv: LiveServer) -> None:
    room = await open_meeting(
        srv,
        "alice",
        live_stream_on_start=True,
        recording_config={"live_streaming_config": {"rtmp_url": "rtmp://192.168.1.10/live/key"}},
    )
    await wait_for(lambda: srv.events(EVENT), 20, "the ERRORED webhook")
    (event,) = await srv.events(EVENT)
    assert event.payload["livestream"]["status"] == "ERRORED"
    assert "private" in event.payload["livestream"]["errMessage"]
    assert srv.ctx.livestreams is not None and srv.ctx.livestreams.active(room.meeting.id) is None
    assert not any((srv.data_dir / "livestreams").glob("*"))


async def _eq(value: Any, wanted: Any) -> bool:
    return bool(await value == wanted)


async def test_a_render_that_dies_is_errored_and_the_meeting_can_stream_again(srv: LiveServer) -> None:
    room = await open_meeting(srv, "alice")
    engine = srv.ctx.livestreams
    assert engine is not None
    async with cloudflare(srv) as cf:
        ls = cf.realtime_kit.livestreams
        small = {"video_config": {"width": 320, "height": 180}}
        first = await ls.start_livestreaming_a_meeting(room.meeting.id, **ids(srv), **small)  # type: ignore[arg-type]
        lid = str(first.data.id)  # type: ignore[union-attr]

        async def status_of(livestream_id: str) -> str:
            rows = await srv.rows(Livestream, Livestream.id == livestream_id)
            return str(rows[0].status)

        await wait_for(lambda: _eq(status_of(lid), "LIVE"), 60, "LIVE")
        render = engine._streams[lid].render
        assert render is not None
        render.process.kill()  # the render process dies mid-stream
        await wait_for(lambda: _eq(status_of(lid), "ERRORED"), 30, "ERRORED")
        runs = await ls.get_livestream_session_for_livestream_id(lid, **ids(srv))
        assert runs.data is not None and runs.data.session is not None
        assert "exited with code" in str(runs.data.session.err_message)
        assert runs.data.session.stopped_time is not None
        events = [e.payload["livestream"] for e in await srv.events(EVENT)]
        assert [e["status"] for e in events] == ["INVOKED", "LIVE", "ERRORED"]
        assert "exited with code" in events[-1]["errMessage"]
        with pytest.raises(NotFoundError):
            await ls.get_meeting_active_livestreams(room.meeting.id, **ids(srv))
        assert engine.active(room.meeting.id) is None
        assert not (srv.data_dir / "livestreams" / lid).exists()

        again = await ls.start_livestreaming_a_meeting(room.meeting.id, **ids(srv), **small)  # type: ignore[arg-type]
        assert again.data is not None and again.data.id != lid
        await ls.stop_livestreaming_a_meeting(room.meeting.id, **ids(srv))
        assert await status_of(str(again.data.id)) == "IDLE"
