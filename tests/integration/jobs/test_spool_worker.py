"""Recordings from any node: a media node spools its segments to S3 (moto) while it records, and a
``roomtape worker`` with its own empty data directory renders and uploads them, through an outage of the spool."""

from __future__ import annotations

import asyncio
import io
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import boto3
import httpx
import numpy as np
import pytest
import redis
from cloudflare import AsyncCloudflare
from tests.contract.storage_servers import MotoS3, started
from tests.integration.jobs.recordings import stop_worker
from tests.integration.recording.recording_server import LiveServer, live_server, open_meeting, publish, wait_for
from tests.integration.recording.test_meeting_recording import tone_power

from roomtape.db.models import TrackFile
from roomtape.jobs.upload import choice_for

pytestmark = pytest.mark.timeout(300)

REDIS_URL = os.environ.get("ROOMTAPE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
BIN = Path(sys.executable).parent
KEY, SECRET = "AKIATESTROOMTAPE", "roomtape-test-secret-key"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    yield from started(MotoS3)


def s3_url(moto: MotoS3, bucket: str, prefix: str) -> str:
    return f"s3://{bucket}/{prefix}?region=us-east-1&endpoint={moto.endpoint}&path_style=true"


def s3(moto: MotoS3) -> Any:
    return boto3.client(
        "s3", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id=KEY, aws_secret_access_key=SECRET
    )


def keys(moto: MotoS3, bucket: str, prefix: str) -> list[str]:
    pages = s3(moto).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


async def status_of(srv: LiveServer, rid: str) -> str:
    return (await srv.recording(rid)).status


async def start_composite(srv: LiveServer, cf: AsyncCloudflare, meeting_id: str) -> str:
    """Start a meeting recording (320x240 H.264 composite) through the RealtimeKit SDK; its id."""
    started = await cf.realtime_kit.recordings.start_recordings(
        srv.app_id,
        account_id=srv.account_id,
        meeting_id=meeting_id,
        video_config={"codec": "H264", "width": 320, "height": 240},  # type: ignore[arg-type]
    )
    assert started.data is not None
    return started.data.id


async def test_worker_with_an_empty_data_dir_renders_what_the_media_node_spooled(
    tmp_path: Path, moto: MotoS3, pg_database_url: str
) -> None:
    spool_bucket, final_bucket = f"spool-{uuid.uuid4().hex[:8]}", f"final-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(spool_bucket)
    moto.create_bucket(final_bucket)
    queue = f"roomtape-test:{uuid.uuid4().hex}"
    media_dir, worker_dir = tmp_path / "media", tmp_path / "worker"
    media_dir.mkdir()
    worker_dir.mkdir()
    common = {
        "broker_url": REDIS_URL,
        "broker_queue": queue,
        "spool_url": s3_url(moto, spool_bucket, "nodes"),
        "spool_access_key": KEY,
        "spool_secret": SECRET,
        "storage_url": s3_url(moto, final_bucket, "final"),
        "storage_access_key": KEY,
        "storage_secret": SECRET,
    }
    env = {
        **os.environ,
        "ROOMTAPE_DATA_DIR": str(worker_dir),  # not the media node's: nothing is shared but the database
        "ROOMTAPE_DATABASE_URL": pg_database_url,
        "ROOMTAPE_SECRET_KEY": "test-secret-key",
        **{f"ROOMTAPE_{k.upper()}": v for k, v in common.items()},
    }
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(  # noqa: ASYNC220 - starting it is instant; the test awaits its results
        [str(BIN / "roomtape"), "worker"], env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    try:
        async with live_server(media_dir, database_url=pg_database_url, segment_max_seconds=2.0, **common) as srv:
            shipper = srv.ctx.recordings.spool
            room = await open_meeting(srv, "alice", "bob")
            pubs = [await publish(room, "alice", 440.0), await publish(room, "bob", 1000.0)]
            try:
                async with AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0) as cf:
                    composite = await start_composite(srv, cf, room.meeting.id)
                    async with httpx.AsyncClient(base_url=srv.base_url, headers=srv.headers) as http:
                        r = await http.post(
                            "/v2/recordings/participant/track/start",
                            json={"roomId": room.meeting.id, "participantId": "alice", "kind": "audio"},
                        )
                        assert r.status_code == 200, r.text
                        track = r.json()["recordingId"]
                    for rid in (composite, track):
                        await wait_for(lambda rid=rid: _is(srv, rid, "RECORDING"), 15, "RECORDING")

                    # Segments reach the spool while the meeting runs: each track's first piece (2 s) at least.
                    def spooled(rid: str) -> list[str]:
                        return [k for k in keys(moto, spool_bucket, f"nodes/{rid}/") if k.endswith(".webm")]

                    def every_track_spooled() -> bool:
                        names = spooled(composite)
                        kinds = {tuple(k.split("/")[3:5]) for k in names}  # nodes/rec/session/participant/kind
                        return len(kinds) == 4 and bool(spooled(track))

                    await wait_for(every_track_spooled, 30, "a segment of every track in the spool")
                    before_outage = spooled(composite)
                    assert await status_of(srv, composite) == "RECORDING"
                    print(f"\nin the spool while recording: {len(before_outage)} segments of the composite")

                    # The spool goes down for a while: closing segments are retried, nothing is lost.
                    moto.stop()
                    try:
                        await wait_for(lambda: shipper.failures > 0, 30, "a failed spool upload")
                        await asyncio.sleep(2.0)
                    finally:
                        moto.start()
                    failures = shipper.failures
                    await wait_for(lambda: len(spooled(composite)) > len(before_outage), 30, "uploads after outage")
                    await asyncio.sleep(1.0)
                    await cf.realtime_kit.recordings.pause_resume_stop_recording(
                        composite, account_id=srv.account_id, app_id=srv.app_id, action="stop"
                    )
                    async with httpx.AsyncClient(base_url=srv.base_url, headers=srv.headers) as http:
                        r = await http.post(
                            "/v2/recordings/participant/track/stop",
                            json={"roomId": room.meeting.id, "participantId": "alice", "kind": "audio"},
                        )
                        assert r.status_code == 200, r.text
            finally:
                for pub in pubs:
                    await pub.close()
            for rid in (composite, track):
                await wait_for(lambda rid=rid: _is(srv, rid, "UPLOADED", "ERRORED"), 180, f"{rid} UPLOADED")
            rows = {rid: await srv.recording(rid) for rid in (composite, track)}
            files = {rid: await srv.files(rid) for rid in (composite, track)}
            stored = {rid: choice_for(srv.ctx, rec) for rid, rec in rows.items()}  # the final storage's keys
    finally:
        stop_worker(worker)
        r = redis.Redis.from_url(REDIS_URL)
        for key in r.scan_iter(f"{queue}*"):
            r.delete(key)
    worker_log = log.read_text()
    for rid, rec in rows.items():
        assert rec.status == "UPLOADED", f"{rid}: {rec.error}\n{worker_log[-3000:]}"
    assert f"recording {composite}: " in worker_log and "fetched from the spool" in worker_log
    # The media node rendered the composite live and spooled it: the worker uploaded it, rendering nothing.
    assert "live" in rows[composite].config["composite"], rows[composite].config.get("composite")
    assert f"recording {composite}: rendering the composite" not in worker_log
    print(f"spool uploads retried during the outage: {failures}")
    assert failures > 0

    # The media node kept no track file (spooled, then removed); the spool is emptied once UPLOADED.
    assert not list(media_dir.rglob("*.webm"))
    assert keys(moto, spool_bucket, "nodes/") == []
    assert not list(worker_dir.rglob("*.webm")) and not list(worker_dir.rglob("*.mp4"))

    # Every segment of every track is in the final storage, decodes, and the pieces follow each other.
    final = s3(moto)
    for rid, segments in files.items():
        assert segments and all(f.status == "uploaded" for f in segments), [(f.path, f.status) for f in segments]
        by_track: dict[tuple[str, str], list[TrackFile]] = {}
        for f in segments:
            by_track.setdefault((f.participant_id, f.kind), []).append(f)
        for (pid, kind), pieces in by_track.items():
            pieces.sort(key=lambda f: f.index)
            assert len(pieces) >= 3, f"{pid}/{kind}: {len(pieces)} segments, expected a split every 2 s"
            for f in pieces:
                body = final.get_object(Bucket=final_bucket, Key=stored[rid].key(f.path))["Body"].read()
                assert len(body) == f.size
                with av.open(io.BytesIO(body)) as container:
                    packets = sum(1 for p in container.demux() if p.size)
                assert packets == f.frames, f"{f.path}: {packets} packets, row says {f.frames}"
            joins = [(b.started_at - a.ended_at).total_seconds() for a, b in itertools.pairwise(pieces)]
            # Split on a running RTP timeline (video at a keyframe): each piece starts where the last one ended.
            assert all(abs(j) <= 0.002 for j in joins), f"{pid}/{kind} joins {joins}"
            span = (pieces[-1].ended_at - pieces[0].started_at).total_seconds()
            recorded = sum((f.ended_at - f.started_at).total_seconds() for f in pieces)
            assert recorded >= span - 0.5, f"{pid}/{kind}: {recorded:.2f} s recorded of {span:.2f} s"

    # The composite (rendered live on the media node, spooled, uploaded by the worker) decodes: its length, its
    # frames, both tones.
    rec = rows[composite]
    assert rec.started_time is not None and rec.stopped_time is not None
    expected = (rec.stopped_time - rec.started_time).total_seconds()
    body = final.get_object(Bucket=final_bucket, Key=stored[composite].key(rec.output_file_name))["Body"].read()
    with av.open(io.BytesIO(body)) as container:
        duration = float(container.duration or 0) / av.time_base
        assert container.streams.audio, "no audio in the composite"
        frames = sum(1 for _ in container.decode(video=0))
    with av.open(io.BytesIO(body)) as container:
        blocks = [f.to_ndarray() for f in container.decode(audio=0)]
    pcm = np.concatenate([b.reshape(b.shape[0], -1)[0] for b in blocks])
    print(f"composite {duration:.3f} s (recorded {expected:.3f} s), {frames} video frames")
    assert abs(duration - expected) <= 0.5
    assert abs(frames - duration * 30) <= 2
    assert tone_power(pcm.astype(np.float64), 440.0) > 20 and tone_power(pcm.astype(np.float64), 1000.0) > 20


async def _is(srv: LiveServer, rid: str, *statuses: str) -> bool:
    return await status_of(srv, rid) in statuses


async def test_in_process_jobs_read_through_the_spool_too(tmp_path: Path) -> None:
    """One process, no broker, a directory as spool: the same path (flush, fetch, render, upload, purge)."""
    spool, media_dir = tmp_path / "spool", tmp_path / "media"
    media_dir.mkdir()
    async with live_server(media_dir, spool_url=f"file://{spool}", segment_max_seconds=1.0) as srv:
        room = await open_meeting(srv, "alice")
        pub = await publish(room, "alice", 440.0)
        try:
            async with AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0) as cf:
                rid = await start_composite(srv, cf, room.meeting.id)
                await wait_for(lambda: _is(srv, rid, "RECORDING"), 15, "RECORDING")
                await wait_for(lambda: len(list(spool.rglob("*.webm"))) >= 2, 20, "segments in the spool")
                await cf.realtime_kit.recordings.pause_resume_stop_recording(
                    rid, account_id=srv.account_id, app_id=srv.app_id, action="stop"
                )
        finally:
            await pub.close()
        await wait_for(lambda: _is(srv, rid, "UPLOADED", "ERRORED"), 90, "UPLOADED")
        rec = await srv.recording(rid)
        assert rec.status == "UPLOADED", rec.error
        assert rec.config["spooled"] is True and "live" in rec.config["composite"]  # rendered live, then spooled
        choice = choice_for(srv.ctx, rec)
    assert not [p for p in spool.rglob("*") if p.is_file()]  # tracks, manifests and the composite: purged
    assert not list((media_dir / "recordings").rglob("*.webm"))
    stored = choice.backend.path_of(choice.key(rec.output_file_name))  # type: ignore[attr-defined]
    with av.open(str(stored)) as container:
        duration = float(container.duration or 0) / av.time_base
        frames = sum(1 for _ in container.decode(video=0))
    assert rec.started_time is not None and rec.stopped_time is not None
    expected = (rec.stopped_time - rec.started_time).total_seconds()
    assert abs(duration - expected) <= 0.5 and abs(frames - duration * 30) <= 2
