from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from tests.contract.storage_servers import MotoS3, SFTPServer, started
from tests.integration.jobs.recordings import stopped_recording

from roomtape.config import Settings
from roomtape.db.models import OutboxEvent, Recording, TrackFile
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.jobs.runner import InProcessRunner
from roomtape.jobs.upload import local_dir, retry_recording, upload_recording


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    yield from started(MotoS3)


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[WorkerDeps]:
    d = await open_deps(Settings(data_dir=tmp_path, secret_key="s" * 40))
    try:
        yield d
    finally:
        await d.engine.dispose()


async def _rec(deps: WorkerDeps, rec_id: str) -> Recording:
    async with deps.sessions() as db:
        rec = await db.get(Recording, rec_id)
        assert rec is not None
        return rec


async def test_upload_to_s3_verifies_then_deletes_local_and_sets_urls(moto: MotoS3, deps: WorkerDeps) -> None:
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    moto.create_bucket(bucket)
    config = {**moto.config(bucket), "path": "customer/recs"}
    rec_id, files = await stopped_recording(deps, config, {"webhook_url": "http://127.0.0.1:9/h"})
    await upload_recording(deps, rec_id)
    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED", rec.error
    assert rec.file_size == len(files["composite.webm"])
    assert rec.download_url and rec.download_url_expiry
    async with httpx.AsyncClient() as client:
        got = await client.get(rec.download_url)
    assert got.status_code == 200 and got.content == files["composite.webm"]
    assert not any(local_dir(deps.settings, rec_id).rglob("*.*"))
    import boto3

    s3 = boto3.client(
        "s3", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert keys == {f"customer/recs/{k}" for k in files}
    async with deps.sessions() as db:
        tracks = list(await db.scalars(select(TrackFile).where(TrackFile.recording_id == rec_id)))
        assert {t.status for t in tracks} == {"uploaded"}
        events = list(await db.scalars(select(OutboxEvent).where(OutboxEvent.event == "recording.statusUpdate")))
        assert [e.payload["recording"]["status"] for e in events] == ["UPLOADED"]
        assert events[0].target_url == "http://127.0.0.1:9/h"
    await upload_recording(deps, rec_id)  # idempotent: nothing changes
    assert (await _rec(deps, rec_id)).status == "UPLOADED"


async def test_backend_down_stays_uploading_then_finishes(moto: MotoS3, deps: WorkerDeps) -> None:
    bucket = f"b-{uuid.uuid4().hex[:10]}"
    moto.create_bucket(bucket)
    rec_id, files = await stopped_recording(deps, moto.config(bucket))
    moto.stop()
    runner = InProcessRunner(deps, deliver=False)
    try:
        await runner.start()  # re-derives the UPLOADING recording from the database
        await asyncio.sleep(3)
        rec = await _rec(deps, rec_id)
        assert rec.status == "UPLOADING"
        assert all((local_dir(deps.settings, rec_id) / rel).is_file() for rel in files)
    finally:
        moto.start()
    moto.create_bucket(bucket)  # moto keeps state in memory: the restarted server is empty
    for _ in range(150):
        if (await _rec(deps, rec_id)).status == "UPLOADED":
            break
        await asyncio.sleep(0.2)
    await runner.stop()
    assert (await _rec(deps, rec_id)).status == "UPLOADED"


async def test_unrecoverable_error_keeps_files_and_can_be_retried(deps: WorkerDeps, tmp_path: Path) -> None:
    for sftp in started(lambda: SFTPServer(tmp_path / "sftp")):
        wrong = {**sftp.config("PASSWORD"), "password": "definitely-wrong-pw"}
        rec_id, files = await stopped_recording(deps, wrong)
        await upload_recording(deps, rec_id)
        rec = await _rec(deps, rec_id)
        assert rec.status == "ERRORED"
        assert rec.error and "credentials" in rec.error and "definitely-wrong-pw" not in rec.error
        assert all((local_dir(deps.settings, rec_id) / rel).is_file() for rel in files)
        async with deps.sessions() as db:  # the operator fixes the password, then retries
            row = await db.get(Recording, rec_id)
            assert row is not None
            row.storage_config = deps.box.seal_fields(sftp.config("PASSWORD"))
            await db.commit()
        await retry_recording(deps, rec_id)
        await upload_recording(deps, rec_id)
        rec = await _rec(deps, rec_id)
        assert rec.status == "UPLOADED", rec.error
        assert rec.download_url and "/downloads/rec-" in rec.download_url
        assert (tmp_path / "sftp" / "s1" / "p1" / "audio" / "0001.webm").read_bytes() == files["s1/p1/audio/0001.webm"]
