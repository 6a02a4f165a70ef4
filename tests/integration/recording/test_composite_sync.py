"""Meeting recordings through the real server (a ``roomtape serve`` subprocess) with Python participants
(``roomtape.agents.RoomClient``) publishing over WebRTC, driven by the Cloudflare SDK.

- sync: each publisher sends a white flash and a beep at the same instant every second (a shared clock, two
  publishers 250 ms apart); in the composite the flash and the beep are within one video frame for each, the
  publishers keep their offset within 20 ms, the duration equals the unpaused recorded time ± 100 ms, pausing
  keeps the track writers running, and every status change is a signed ``recording.statusUpdate``;
- ``max_seconds`` stops a recording (the server's ``recording_max_seconds_scale`` shortens 60 s to 3 s);
- a recording nobody published to ends ERRORED with one status update (RealtimeKit and VideoSDK);
- a server SIGKILLed mid-render renders the composite again at its next start (no partial file left);
- a server SIGKILLed while a recording is PAUSED stops it at start-up (INTERNAL_ERROR) and renders what was
  recorded before the pause.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import standardwebhooks
from cloudflare import AsyncCloudflare
from sqlalchemy import select
from tests.conftest import Server, free_port, start_server, stop_server
from tests.integration.recording.compose_media import (
    BeepAudioTrack,
    FlashVideoTrack,
    Metronome,
    beep_onsets,
    decode_audio,
    onsets,
)
from tests.integration.signaling.signaling_helpers import Api
from tests.integration.webhooks.receiver import Receiver

from roomtape.agents import RoomClient
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.models import OutboxEvent, Recording, TrackFile

pytestmark = pytest.mark.timeout(300)

SERVER_ENV = {
    "ROOMTAPE_ICE_HOST_ADDRESSES": "127.0.0.1",
    "ROOMTAPE_SESSION_KEEP_ALIVE_SCALE": "0.01",
    "ROOMTAPE_RECORDING_MAX_SECONDS_SCALE": "0.05",  # max_seconds=60 stops after 3 s
}
FRAME = 1 / 30
BEEPS = {"alice": (0.0, 1000.0), "bob": (0.25, 1500.0)}  # offset after each whole second, beep frequency


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("composite-sync")
    srv = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}", SERVER_ENV)
    try:
        yield srv
    finally:
        stop_server(srv)


def cloudflare(server: Server) -> AsyncCloudflare:
    return AsyncCloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0)


async def rows(server: Server, model: Any, *where: Any) -> list[Any]:
    engine = create_engine(server.database_url)
    try:
        async with session_factory(engine)() as db:
            return list((await db.scalars(select(model).where(*where))).all())
    finally:
        await engine.dispose()


async def recording(server: Server, rid: str) -> Recording:
    (row,) = await rows(server, Recording, Recording.id == rid)
    return row


async def statuses(server: Server, rid: str) -> list[str]:
    events = await rows(server, OutboxEvent, OutboxEvent.event == "recording.statusUpdate")
    events.sort(key=lambda e: (e.created_at, e.id))
    return [e.payload["recording"]["status"] for e in events if e.payload["recording"]["id"] == rid]


async def wait_status(server: Server, rid: str, wanted: tuple[str, ...], within: float) -> Recording:
    deadline = time.monotonic() + within
    while True:
        rec = await recording(server, rid)
        if rec.status in wanted:
            return rec
        if time.monotonic() > deadline:
            raise TimeoutError(f"recording {rid} is {rec.status}, waited for {wanted}")
        await asyncio.sleep(0.1)


@dataclass
class Publisher:
    client: RoomClient
    participant_id: str


async def join_and_publish(
    server: Server, api: Api, meeting: str, name: str, epoch: float, *, publish: bool = True
) -> Publisher:
    pid, token = api.participant(meeting, name)
    client = RoomClient(server.base_url, token)
    await client.join()
    if publish:
        offset, freq = BEEPS[name]
        metronome = Metronome(epoch, offset)
        await client.publish(audio=BeepAudioTrack(metronome, freq), video=FlashVideoTrack(metronome))
    return Publisher(client, pid)


async def leave_all(publishers: list[Publisher]) -> None:
    for pub in publishers:
        await pub.client.leave()


@dataclass
class Composite:
    duration: float
    video_codec: str
    audio_codec: str
    size: tuple[int, int]
    frame_times: np.ndarray
    tiles: dict[str, np.ndarray]
    """Mean luma of the middle of the left and right grid cells, per frame."""
    rate: int
    samples: np.ndarray


def analyse(path: Path) -> Composite:
    with av.open(str(path)) as container:
        duration = float(container.duration or 0) / av.time_base
        video, audio = container.streams.video[0], container.streams.audio[0]
        codecs = video.codec_context.name, audio.codec_context.name
        size = video.codec_context.width, video.codec_context.height
        times: list[float] = []
        left: list[float] = []
        right: list[float] = []
        for frame in container.decode(video=0):
            y = frame.to_ndarray(format="gray")
            h, w = y.shape
            times.append(float(frame.time or 0.0))
            left.append(float(y[h * 3 // 8 : h * 5 // 8, w // 8 : w * 3 // 8].mean()))
            right.append(float(y[h * 3 // 8 : h * 5 // 8, w * 5 // 8 : w * 7 // 8].mean()))
    rate, samples = decode_audio(path)
    return Composite(
        duration=duration,
        video_codec=codecs[0],
        audio_codec=codecs[1],
        size=size,
        frame_times=np.array(times),
        tiles={"left": np.array(left), "right": np.array(right)},
        rate=rate,
        samples=samples[0].astype(np.float64),
    )


def paired(flashes: list[float], beeps: list[float], within: float = 0.12) -> list[float]:
    """flash - beep for every flash with a beep within ``within`` seconds."""
    out = []
    for f in flashes:
        if beeps:
            b = min(beeps, key=lambda x: abs(x - f))
            if abs(b - f) <= within:
                out.append(f - b)
    return out


def span_boundaries(rec: Recording) -> list[float]:
    """Output times (s) where one recorded span ends and the next begins (paused spans cut out)."""
    out, at = [], 0.0
    for start, end in rec.config["spans"][:-1]:
        at += (end - start) / 1000
        out.append(at)
    return out


async def download(url: str, to: Path) -> Path:
    async with httpx.AsyncClient(timeout=60) as http:
        got = await http.get(url)
    assert got.status_code == 200, got.text
    await asyncio.to_thread(to.write_bytes, got.content)
    return to


async def test_flash_and_beep_in_sync_through_the_live_pipeline(server: Server, tmp_path: Path) -> None:
    api = Api(server)
    meeting = api.meeting(title="sync")
    port = free_port()
    receiver = Receiver(port)
    await receiver.start()
    async with httpx.AsyncClient(base_url=api.base, headers={"Authorization": f"Bearer {server.api_token}"}) as http:
        hook = await http.post(
            "/webhooks",
            json={"name": "sync", "url": f"http://127.0.0.1:{port}/hook", "events": ["recording.statusUpdate"]},
        )
        assert hook.status_code == 201, hook.text
        secret = hook.json()["data"]["secret"]

    epoch = math.floor(time.time()) + 1.0
    publishers = [await join_and_publish(server, api, meeting, name, epoch) for name in ("alice", "bob")]
    names = {pub.participant_id: name for pub, name in zip(publishers, ("alice", "bob"), strict=True)}
    try:
        await asyncio.sleep(1.5)  # both connected and sending
        async with cloudflare(server) as cf:
            started = await cf.realtime_kit.recordings.start_recordings(
                server.app_id,
                account_id=server.account_id,
                meeting_id=meeting,
                video_config={"codec": "H264", "width": 640, "height": 360},
                audio_config={"channel": "stereo", "codec": "AAC"},
            )
            assert started.data is not None
            rid = started.data.id
            await wait_status(server, rid, ("RECORDING",), 20)
            await asyncio.sleep(5.0)
            paused = await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=server.account_id, app_id=server.app_id, action="pause"
            )
            assert paused.data is not None and paused.data.status == "PAUSED"
            await asyncio.sleep(2.5)
            resumed = await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=server.account_id, app_id=server.app_id, action="resume"
            )
            assert resumed.data is not None and resumed.data.status == "RECORDING"
            await asyncio.sleep(5.0)
            await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=server.account_id, app_id=server.app_id, action="stop"
            )
            rec = await wait_status(server, rid, ("UPLOADED", "ERRORED"), 180)
            assert rec.status == "UPLOADED", rec.error
            one = await cf.realtime_kit.recordings.get_one_recording(
                rid, account_id=server.account_id, app_id=server.app_id
            )
            assert one.data.download_url
            path = await download(one.data.download_url, tmp_path / "composite.mp4")
    finally:
        await leave_all(publishers)

    composite = analyse(path)
    assert (composite.video_codec, composite.audio_codec, composite.size) == ("h264", "aac", (640, 360))
    # Rendered live (the server's default): while it recorded, by the live render process; at the stop only the
    # last seconds were left.
    live = rec.config["composite"]["live"]
    print(f"live render: {live}")
    assert live["behind_at_stop_seconds"] < 30 and not live["caught_up_from_files"]

    # Duration: the unpaused recorded time (started_time = first frame written) within 100 ms.
    assert rec.started_time is not None and rec.stopped_time is not None
    recorded = (rec.stopped_time - rec.started_time).total_seconds() - rec.paused_seconds
    print(f"composite {composite.duration:.3f} s, recorded (unpaused) {recorded:.3f} s")
    assert abs(composite.duration - recorded) <= 0.1
    assert 2.0 <= rec.paused_seconds <= 10.0 and 8.0 <= recorded <= 40.0  # generous: the machine is shared

    # Pause only cuts the span from the composite: every track's writer ran through it (one segment across).
    (pause,) = rec.config["pauses"]
    files = await rows(server, TrackFile, TrackFile.recording_id == rid)
    for pid in names:
        for kind in ("audio", "video"):
            mine = [f for f in files if f.participant_id == pid and f.kind == kind]
            assert any(
                f.started_at.timestamp() * 1000 < pause[0] and f.ended_at.timestamp() * 1000 > pause[1] for f in mine
            ), (pid, kind, [(f.started_at, f.ended_at) for f in mine], pause)

    # Flash and beep: within one video frame, for every participant. A span (the first, or the one after the
    # pause) may begin inside a flash or a beep, whose "onset" is then only the cut: onsets in the first 0.3 s
    # after the start or a cut are not known to be onsets and are left out.
    cuts = span_boundaries(rec)
    starts = [0.0, *cuts]

    def known(times: list[float]) -> list[float]:
        return [t for t in times if not any(start <= t < start + 0.3 for start in starts)]

    beeps = {name: known(beep_onsets(composite.samples, composite.rate, BEEPS[name][1])) for name in ("alice", "bob")}
    flashes = {tile: known(onsets(luma > 128, composite.frame_times)) for tile, luma in composite.tiles.items()}
    straight = len(paired(flashes["left"], beeps["alice"])) + len(paired(flashes["right"], beeps["bob"]))
    crossed = len(paired(flashes["left"], beeps["bob"])) + len(paired(flashes["right"], beeps["alice"]))
    tile_of = {"alice": "left", "bob": "right"} if straight >= crossed else {"alice": "right", "bob": "left"}
    for name in ("alice", "bob"):
        diffs = paired(flashes[tile_of[name]], beeps[name])
        print(f"{name}: {len(diffs)} flash/beep pairs, flash - beep in ms: {[round(d * 1000) for d in diffs]}")
        # Every second has a beat; a beat cut by the start, the pause or the stop may be missing (or left out
        # above), and video starts at its first keyframe (a little after audio).
        seen = flashes[tile_of[name]]
        assert len(seen) >= recorded - 5 and len(diffs) >= len(seen) - 2, (name, flashes, beeps)
        assert max(abs(d) for d in diffs) <= FRAME + 1e-3

    # Two publishers: bob's beeps stay 250 ms after alice's (20 ms), except across the pause's cut.
    offsets = []
    for a in beeps["alice"]:
        later = [b for b in beeps["bob"] if 0 < b - a < 0.5]
        if later and not any(a <= cut <= later[0] for cut in cuts):
            offsets.append(later[0] - a)
    print(f"bob - alice in ms: {[round(o * 1000) for o in offsets]}")
    assert len(offsets) >= recorded - 5
    assert all(abs(o - 0.25) <= 0.02 for o in offsets), offsets

    # Every status change: one signed recording.statusUpdate, in order.
    assert await statuses(server, rid) == ["INVOKED", "RECORDING", "PAUSED", "RECORDING", "UPLOADING", "UPLOADED"]
    deadline = time.monotonic() + 30
    while len([r for r in receiver.received if json.loads(r.body)["recording"]["id"] == rid]) < 6:
        assert time.monotonic() < deadline, "webhook deliveries missing"
        await asyncio.sleep(0.2)
    await receiver.stop()
    verifier = standardwebhooks.Webhook(secret)
    delivered = [verifier.verify(r.body, r.headers) for r in receiver.received]
    assert [d["recording"]["status"] for d in delivered if d["recording"]["id"] == rid] == [
        "INVOKED",
        "RECORDING",
        "PAUSED",
        "RECORDING",
        "UPLOADING",
        "UPLOADED",
    ]


async def test_max_seconds_stops_the_recording(server: Server, tmp_path: Path) -> None:
    api = Api(server)
    meeting = api.meeting(title="max seconds")
    publishers = [await join_and_publish(server, api, meeting, "alice", math.floor(time.time()) + 1.0)]
    try:
        await asyncio.sleep(1.0)
        async with cloudflare(server) as cf:
            started = await cf.realtime_kit.recordings.start_recordings(
                server.app_id,
                account_id=server.account_id,
                meeting_id=meeting,
                max_seconds=60,  # x 0.05 (the server's recording_max_seconds_scale): 3 s
                video_config={"codec": "H264", "width": 320, "height": 240},
            )
            assert started.data is not None
            rid = started.data.id
            # Nobody stops it: the limit does.
            rec = await wait_status(server, rid, ("UPLOADED", "ERRORED"), 120)
    finally:
        await leave_all(publishers)
    assert rec.status == "UPLOADED", rec.error
    assert rec.stop_reason == {"reason": "API_CALL", "caller": {"type": "ORGANIZATION", "name": "max_seconds"}}
    assert rec.config["max_seconds"] == 60
    assert rec.stopped_time is not None and rec.started_time is not None
    ran = (rec.stopped_time - rec.invoked_time).total_seconds()
    assert 3.0 <= ran <= 6.0, ran  # the timer fired 3 s after the start call (the stop itself takes a moment)
    assert rec.download_url
    composite = analyse(await download(rec.download_url, tmp_path / "limited.mp4"))
    recorded = (rec.stopped_time - rec.started_time).total_seconds()
    assert abs(composite.duration - recorded) <= 0.1
    # Not longer than the time from the start call to the stop, give or take the last video frame (33 ms; the
    # file's duration ends on a whole frame: seen 3.033 s against 3.016 s).
    assert composite.duration <= ran + 0.04, (composite.duration, ran)


async def test_nobody_published_ends_errored_with_one_status_update(server: Server) -> None:
    """A recording of a meeting where nobody published: ERRORED, ``error`` says why, no file, no RECORDING or
    UPLOADING status update (RealtimeKit), ``recording-failed`` and no ``-started`` (VideoSDK)."""
    api = Api(server)
    meeting = api.meeting(title="silent")
    publishers = [await join_and_publish(server, api, meeting, "alice", 0.0, publish=False)]
    try:
        async with cloudflare(server) as cf:
            started = await cf.realtime_kit.recordings.start_recordings(
                server.app_id, account_id=server.account_id, meeting_id=meeting
            )
            assert started.data is not None
            rid = started.data.id
            await asyncio.sleep(1.5)
            assert (await recording(server, rid)).status == "INVOKED"
            await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=server.account_id, app_id=server.app_id, action="stop"
            )
            rec = await wait_status(server, rid, ("ERRORED", "UPLOADED"), 30)
            one = await cf.realtime_kit.recordings.get_one_recording(
                rid, account_id=server.account_id, app_id=server.app_id
            )
            assert one.data.status == "ERRORED" and one.data.download_url is None
            assert one.data.started_time is None and one.data.stop_reason is not None

        async with httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": server.api_token}) as http:
            r = await http.post("/v2/recordings/start", json={"roomId": meeting, "webhookUrl": "http://127.0.0.1:9/"})
            assert r.status_code == 200, r.text
            vid = r.json()["recordingId"]
            await asyncio.sleep(1.0)
            assert (await http.post("/v2/recordings/end", json={"roomId": meeting})).status_code == 200
        vrec = await wait_status(server, vid, ("ERRORED", "UPLOADED"), 30)
    finally:
        await leave_all(publishers)
    assert rec.error == "no media was recorded" and vrec.error == "no media was recorded"
    await asyncio.sleep(1.0)  # nothing more may follow
    assert await statuses(server, rid) == ["INVOKED", "ERRORED"]
    assert await statuses(server, vid) == ["INVOKED", "ERRORED"]
    videosdk = await rows(server, OutboxEvent, OutboxEvent.event.like("recording-%"))
    kinds = [e.event for e in sorted(videosdk, key=lambda e: e.created_at) if e.payload["data"]["recordingId"] == vid]
    assert kinds == ["recording-starting", "recording-stopping", "recording-failed"]


async def test_sigkill_mid_render_renders_again_at_start(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'roomtape.db'}"
    # The render from files after the stop (a live render would leave only its last second to kill).
    env = {**SERVER_ENV, "ROOMTAPE_LIVE_COMPOSITE": "false"}
    first = await asyncio.to_thread(start_server, tmp_path, database, env)
    publishers: list[Publisher] = []
    try:
        api = Api(first)
        meeting = api.meeting(title="crash while rendering")
        epoch = math.floor(time.time()) + 1.0
        publishers = [await join_and_publish(first, api, meeting, name, epoch) for name in ("alice", "bob")]
        await asyncio.sleep(1.0)
        async with cloudflare(first) as cf:
            started = await cf.realtime_kit.recordings.start_recordings(
                first.app_id, account_id=first.account_id, meeting_id=meeting, file_name_prefix="crash"
            )  # 1280x720 grid: the render takes a while
            assert started.data is not None
            rid = started.data.id
            await wait_status(first, rid, ("RECORDING",), 20)
            await asyncio.sleep(6.0)
            await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=first.account_id, app_id=first.app_id, action="stop"
            )
        local = tmp_path / "recordings" / rid
        deadline = time.monotonic() + 120
        while not list(local.glob(".*.part")):  # the render writes under a temporary name
            assert time.monotonic() < deadline, "the render never started"
            assert (await recording(first, rid)).status == "UPLOADING"
            await asyncio.sleep(0.01)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        for pub in publishers:
            with contextlib.suppress(Exception):
                await pub.client.leave()
        if first.process.poll() is None:
            stop_server(first)
    killed = await recording(first, rid)
    assert killed.status == "UPLOADING" and not (killed.config.get("progress") or {}).get("done")
    assert list(local.glob(".*.part")), "killed after the render finished: nothing was tested"
    assert not (local / killed.output_file_name).exists()

    second = await asyncio.to_thread(start_server, tmp_path, database, env)
    try:
        rec = await wait_status(second, rid, ("UPLOADED", "ERRORED"), 240)
    finally:
        stop_server(second)
    assert rec.status == "UPLOADED", rec.error
    assert rec.config["progress"]["done"] and rec.output_file_name == f"crash_{rid}.mp4"
    assert rec.stop_reason is not None and rec.stop_reason["reason"] == "API_CALL"
    leftovers = await asyncio.to_thread(lambda: list(tmp_path.rglob("*.part")))
    assert leftovers == []  # no partial file left, locally or in the storage
    stored = await asyncio.to_thread(lambda: list((tmp_path / "storage").rglob(rec.output_file_name)))
    assert len(stored) == 1
    composite = analyse(stored[0])
    assert (composite.video_codec, composite.size) == ("h264", (1280, 720))
    assert rec.started_time is not None and rec.stopped_time is not None
    recorded = (rec.stopped_time - rec.started_time).total_seconds()
    assert abs(composite.duration - recorded) <= 0.1
    # One UPLOADING status update (the restart resumed the render, the status did not change), then UPLOADED.
    assert (await statuses(second, rid))[-3:] == ["RECORDING", "UPLOADING", "UPLOADED"]


async def test_sigkill_while_paused_then_restart_renders_what_was_recorded(tmp_path: Path) -> None:
    """Killed while PAUSED: at start-up the recording stops (INTERNAL_ERROR), the open pause ends at the crash,
    and the composite holds the recorded span before the pause."""
    database = f"sqlite+aiosqlite:///{tmp_path / 'roomtape.db'}"
    first = await asyncio.to_thread(start_server, tmp_path, database, SERVER_ENV)
    publishers: list[Publisher] = []
    try:
        api = Api(first)
        meeting = api.meeting(title="crash while paused")
        publishers = [await join_and_publish(first, api, meeting, "alice", math.floor(time.time()) + 1.0)]
        await asyncio.sleep(1.0)
        async with cloudflare(first) as cf:
            started = await cf.realtime_kit.recordings.start_recordings(
                first.app_id,
                account_id=first.account_id,
                meeting_id=meeting,
                video_config={"codec": "H264", "width": 320, "height": 240},
            )
            assert started.data is not None
            rid = started.data.id
            await wait_status(first, rid, ("RECORDING",), 20)
            await asyncio.sleep(3.0)
            await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=first.account_id, app_id=first.app_id, action="pause"
            )
        await asyncio.sleep(1.5)
        local = tmp_path / "recordings" / rid
        deadline = time.monotonic() + 30  # its process starts in a second or two, later on a loaded machine
        while not list(local.glob(".*.part")):
            assert time.monotonic() < deadline, "no live render was writing the composite"
            await asyncio.sleep(0.1)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=10)
    finally:
        for pub in publishers:
            with contextlib.suppress(Exception):
                await pub.client.leave()
        if first.process.poll() is None:
            stop_server(first)
    assert (await recording(first, rid)).status == "PAUSED"
    deadline = time.monotonic() + 15
    while list(local.glob(".*.part")):  # the live render process saw its server go and removed its file
        assert time.monotonic() < deadline, "the orphaned live render is still writing"
        await asyncio.sleep(0.2)

    second = await asyncio.to_thread(start_server, tmp_path, database, SERVER_ENV)
    try:
        rec = await wait_status(second, rid, ("UPLOADED", "ERRORED"), 240)
    finally:
        stop_server(second)
    assert rec.status == "UPLOADED", rec.error
    assert "live" not in rec.config["composite"]  # rendered from the files at the restart
    assert rec.stop_reason is not None and rec.stop_reason["reason"] == "INTERNAL_ERROR"
    assert rec.started_time is not None
    ((pause_start, pause_end),) = rec.config["pauses"]
    assert rec.stopped_time is not None and pause_end == round(rec.stopped_time.timestamp() * 1000)
    assert rec.paused_at is None  # never resumed: the pause ran to the crash, and is closed there
    before_pause = pause_start / 1000 - rec.started_time.timestamp()
    assert rec.recording_duration == round(before_pause)
    stored = await asyncio.to_thread(lambda: list((tmp_path / "storage").rglob(rec.output_file_name)))
    composite = analyse(stored[0])
    assert abs(composite.duration - before_pause) <= 0.1, (composite.duration, before_pause)
    assert (await statuses(second, rid))[-4:] == ["RECORDING", "PAUSED", "UPLOADING", "UPLOADED"]
