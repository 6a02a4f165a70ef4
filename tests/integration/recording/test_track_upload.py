"""Track recordings end to end through the storage upload job: a RealtimeKit meeting's ``storage_config``
(S3 on moto, with ``endpoint`` and ``path_style``), the retry endpoint, and download URL refresh."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import boto3
import httpx
import pytest
from cloudflare import AsyncCloudflare
from tests.contract.storage_servers import MotoS3, started
from tests.integration.recording.recording_server import (
    LiveServer,
    MeetingRoom,
    live_server,
    open_meeting,
    publish,
    wait_for,
)

from roomtape.db.models import Recording, utcnow

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    yield from started(MotoS3)


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path) as server:
        yield server


def s3(moto: MotoS3) -> Any:
    return boto3.client(
        "s3", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )


def kit(srv: LiveServer, path: str) -> str:
    return f"{srv.base_url}/accounts/{srv.account_id}/realtime/kit/{srv.app_id}/{path}"


async def set_storage(srv: LiveServer, room: MeetingRoom, storage: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.patch(
            kit(srv, f"meetings/{room.meeting.id}"),
            json={"recording_config": {"storage_config": storage}},
            headers=srv.headers,
        )
        assert r.status_code == 200, r.text
        assert "secret" not in r.text.replace('"secret"', "") and storage["secret"] not in r.text


async def record_audio(srv: LiveServer, room: MeetingRoom, name: str) -> str:
    publisher = await publish(room, name)
    try:
        async with AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0) as cf:
            started_ = await cf.realtime_kit.recordings.start_track_recording(
                srv.app_id, account_id=srv.account_id, meeting_id=room.meeting.id
            )
            assert started_.data is not None
            rid = started_.data.recording.id
        await wait_for(lambda: _status_in(srv, rid, "RECORDING"), 10, "RECORDING")
        await asyncio.sleep(1.5)
    finally:
        await publisher.close()
    assert srv.ctx.recordings is not None
    await srv.ctx.recordings.stop_recording(rid, "API_CALL")
    return rid


async def _status_in(srv: LiveServer, rid: str, *statuses: str) -> bool:
    return (await srv.recording(rid)).status in statuses


def frames_in(data: bytes) -> int:
    with av.open(io.BytesIO(data)) as container:
        return sum(1 for _ in container.decode(audio=0))


async def test_track_recording_uploads_to_the_meetings_s3_storage(srv: LiveServer, moto: MotoS3) -> None:
    bucket = "tracks-ok"
    moto.create_bucket(bucket)
    room = await open_meeting(srv, "alice")
    await set_storage(srv, room, {**moto.config(bucket), "path": "customer/tracks"})
    rid = await record_audio(srv, room, "alice")
    await wait_for(lambda: _status_in(srv, rid, "UPLOADED", "ERRORED"), 20, "upload")
    recording = await srv.recording(rid)
    assert recording.status == "UPLOADED", recording.error

    alice = room.pid("alice")
    prefix = f"customer/tracks/{room.session_id}/{alice}/audio/"
    keys = sorted(o["Key"] for o in s3(moto).list_objects_v2(Bucket=bucket)["Contents"])
    files = await srv.files(rid)
    assert files and all(f.status == "uploaded" for f in files)
    assert sorted([*(f"customer/tracks/{f.path}" for f in files), prefix + "manifest.json"]) == keys
    assert all(k.startswith(prefix) for k in keys)
    for f in files:
        data = s3(moto).get_object(Bucket=bucket, Key=f"customer/tracks/{f.path}")["Body"].read()
        assert len(data) == f.size and frames_in(data) == f.frames > 0
    assert not list((srv.data_dir / "recordings" / rid).rglob("*.webm"))  # local copies removed after upload

    # An expired download URL is presigned again when the recording is fetched; the list filters on expiry.
    async with srv.ctx.sessions() as db:
        row = await db.get(Recording, rid)
        assert row is not None
        row.output_file_name = files[0].path
        row.download_url = "https://expired.invalid/x"
        row.download_url_expiry = utcnow() - timedelta(hours=1)
        await db.commit()
    async with AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0) as cf:
        expired = await cf.realtime_kit.recordings.get_recordings(srv.app_id, account_id=srv.account_id, expired=True)
        assert [r.id for r in expired.data] == [rid]
        fresh = await cf.realtime_kit.recordings.get_recordings(srv.app_id, account_id=srv.account_id, expired=False)
        assert rid not in [r.id for r in fresh.data]
        one = await cf.realtime_kit.recordings.get_one_recording(rid, account_id=srv.account_id, app_id=srv.app_id)
        assert one.data is not None and one.data.download_url and one.data.download_url_expiry is not None
        assert one.data.download_url_expiry > utcnow() + timedelta(minutes=5)
        expired = await cf.realtime_kit.recordings.get_recordings(srv.app_id, account_id=srv.account_id, expired=True)
        assert expired.data == []
    async with httpx.AsyncClient() as http:
        r = await http.get(one.data.download_url)
        assert r.status_code == 200 and frames_in(r.content) == files[0].frames


async def test_failed_upload_is_errored_then_retried_by_api(srv: LiveServer, moto: MotoS3) -> None:
    bucket = "tracks-later"  # does not exist yet: S3 answers NoSuchBucket, a permanent error
    room = await open_meeting(srv, "bob")
    await set_storage(srv, room, {**moto.config(bucket), "path": "p"})
    rid = await record_audio(srv, room, "bob")
    await wait_for(lambda: _status_in(srv, rid, "UPLOADED", "ERRORED"), 20, "upload")
    recording = await srv.recording(rid)
    assert recording.status == "ERRORED" and recording.error and "s3" in recording.error
    assert list((srv.data_dir / "recordings" / rid).rglob("*.webm"))  # files kept

    moto.create_bucket(bucket)
    async with httpx.AsyncClient() as http:
        r = await http.post(kit(srv, f"recordings/{rid}/retry"), headers=srv.headers)
        assert r.status_code == 200, r.text
        assert r.json()["data"]["status"] == "UPLOADING"
        await wait_for(lambda: _status_in(srv, rid, "UPLOADED", "ERRORED"), 20, "upload after retry")
        assert (await srv.recording(rid)).status == "UPLOADED"
        r = await http.post(kit(srv, f"recordings/{rid}/retry"), headers=srv.headers)
        assert r.status_code == 409, r.text
        r = await http.post(kit(srv, "recordings/00000000-0000-0000-0000-000000000000/retry"), headers=srv.headers)
        assert r.status_code == 404, r.text
    keys = [o["Key"] for o in s3(moto).list_objects_v2(Bucket=bucket)["Contents"]]
    assert keys and all(k.startswith(f"p/{room.session_id}/{room.pid('bob')}/audio/") for k in keys)
