"""An app-wide default storage (recording > app > server), write-only secrets; storage hosts and paths that
could leave the allowed network or the storage root are refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from tests.conftest import Server, start_server, stop_server
from tests.contract.storage_servers import MotoS3, SFTPServer, started
from tests.integration.jobs.recordings import stopped_recording

from roomtape.config import Settings
from roomtape.db.models import Recording
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.jobs.upload import upload_recording


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoS3]:
    yield from started(MotoS3)


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("appstore")
    server = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}")
    try:
        yield server
    finally:
        stop_server(server)


def _keys(moto: MotoS3, bucket: str) -> set[str]:
    s3 = boto3.client(
        "s3", endpoint_url=moto.endpoint, region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


async def _status(deps: WorkerDeps, rec_id: str) -> tuple[str, str | None]:
    async with deps.sessions() as db:
        rec = await db.get(Recording, rec_id)
        assert rec is not None
        return rec.status, rec.error


APP_SECRET = "app-default-secret-value-4b1d"


async def test_recording_then_app_then_server_storage(srv: Server, moto: MotoS3) -> None:
    app_bucket, own_bucket = f"app-{uuid.uuid4().hex[:8]}", f"own-{uuid.uuid4().hex[:8]}"
    moto.create_bucket(app_bucket)
    moto.create_bucket(own_bucket)
    app = srv.new_app("with-default")
    other = srv.new_app("without-default")
    url = f"{srv.base_url}/accounts/{app['account_id']}/realtime/kit/apps/{app['app_id']}"
    headers = {"Authorization": f"Bearer {app['api_token']}"}
    bodies: list[str] = []
    async with httpx.AsyncClient(headers=headers, timeout=60) as client:
        before = await client.get(url)
        assert before.status_code == 200 and before.json()["data"]["storage_config"] is None
        config = {**moto.config(app_bucket), "secret": APP_SECRET, "path": "tenant/recs"}
        r = await client.patch(url, json={"storage_config": config})
        assert r.status_code == 200, r.text
        bodies += [r.text, (await client.get(url)).text]
        shown = r.json()["data"]["storage_config"]
        assert shown["bucket"] == app_bucket and shown["path"] == "tenant/recs" and shown["type"] == "aws"
        assert "secret" not in shown and "access_key" not in shown
        bad = await client.patch(url, json={"storage_config": {**config, "path": "../escape"}})
        assert bad.status_code == 400 and "storage_config.path" in bad.text
        bodies.append(bad.text)
        listed = await client.get(f"{srv.base_url}/accounts/{app['account_id']}/realtime/kit/apps")
        bodies.append(listed.text)
        renamed = await client.patch(url, json={"name": "renamed"})
        assert renamed.json()["data"]["name"] == "renamed" and renamed.json()["data"]["storage_config"]
        elsewhere = await client.get(
            f"{srv.base_url}/accounts/{other['account_id']}/realtime/kit/apps/{app['app_id']}",
            headers={"Authorization": f"Bearer {other['api_token']}"},
        )
        assert elsewhere.status_code == 404

    deps = await open_deps(Settings(data_dir=srv.data_dir, database_url=srv.database_url))
    try:
        # 1. the recording's own storage_config wins
        own, _ = await stopped_recording(deps, moto.config(own_bucket), app_id=app["app_id"])
        # 2. none: the app's default, under its path and the recording's bucketDirPath
        by_app, files = await stopped_recording(deps, config={"bucket_dir_path": "vsdk/dir"}, app_id=app["app_id"])
        # 3. an app without a default: the server's (local disk, under the app id)
        by_server, _ = await stopped_recording(deps, app_id=other["app_id"])
        for rec_id in (own, by_app, by_server):
            await upload_recording(deps, rec_id)
            assert await _status(deps, rec_id) == ("UPLOADED", None)
        assert _keys(moto, own_bucket) == set(files)
        assert _keys(moto, app_bucket) == {f"tenant/recs/vsdk/dir/{k}" for k in files}
        local = srv.data_dir / "storage" / other["app_id"]
        assert {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()} == set(files)
        async with deps.sessions() as db:
            adopted = await db.get(Recording, by_app)
            assert adopted is not None and adopted.storage_config is not None
            assert adopted.storage_config["path"] == "tenant/recs/vsdk/dir"
            assert adopted.storage_config["secret"].startswith("enc:")  # still sealed
    finally:
        await deps.engine.dispose()

    log = (srv.data_dir / "server.log").read_text(errors="replace")
    raw = b"".join(p.read_bytes() for p in srv.data_dir.glob("roomtape.db*"))
    for body in bodies:
        assert APP_SECRET not in body
    assert APP_SECRET not in log
    assert APP_SECRET.encode() not in raw


def _rejects(client: httpx.Client, method: str, url: str, body: dict[str, Any], needle: str) -> None:
    r = client.request(method, url, json=body)
    assert r.status_code == 400, (body, r.text)
    assert needle in r.json()["error"]["message"], r.text


ESCAPES = ["../x", "a/../../x", "/etc/cron.d", "a\\..\\b", "a%2f..%2fb", "%2e%2e/x", "a/\x01b", ".."]


def test_storage_hosts_and_paths_are_refused(tmp_path: Path) -> None:
    server = start_server(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'roomtape.db'}", {"ROOMTAPE_OUTBOUND_ALLOW_CIDRS": ""}
    )
    try:
        base = f"{server.base_url}/accounts/{server.account_id}/realtime/kit"
        with httpx.Client(headers={"Authorization": f"Bearer {server.api_token}"}, timeout=60) as client:
            sftp = {"type": "sftp", "host": "127.0.0.1", "username": "u", "auth_method": "PASSWORD", "password": "p"}
            s3 = {"type": "aws", "bucket": "b", "endpoint": "http://169.254.169.254"}
            refused = [
                sftp,
                {**sftp, "host": "localhost"},
                {**sftp, "host": "10.0.0.7"},
                s3,
                {**s3, "type": "digitalocean", "endpoint": "http://[fd00::1]:9000"},
                {"type": "digitalocean", "bucket": "b", "region": "127.0.0.1#"},
                {"type": "gcs", "bucket": "b", "endpoint": "http://192.168.1.1"},
                {"type": "azure", "bucket": "c", "access_key": "acct", "secret": "k", "endpoint": "http://10.2.3.4"},
            ]
            meeting = client.post(f"{base}/{server.app_id}/meetings", json={"title": "m"}).json()["data"]["id"]
            for config in refused:
                needle = "private, loopback or link-local"
                _rejects(
                    client,
                    "POST",
                    f"{base}/{server.app_id}/meetings",
                    {"recording_config": {"storage_config": config}},
                    needle,
                )
                _rejects(client, "PATCH", f"{base}/apps/{server.app_id}", {"storage_config": config}, needle)
                _rejects(
                    client,
                    "PATCH",
                    f"{base}/{server.app_id}/meetings/{meeting}",
                    {"recording_config": {"storage_config": config}},
                    needle,
                )
                _rejects(
                    client,
                    "POST",
                    f"{base}/{server.app_id}/recordings",
                    {"meeting_id": meeting, "storage_config": config},
                    needle,
                )
            public = {**sftp, "host": "93.184.216.34"}
            ok = client.post(f"{base}/{server.app_id}/meetings", json={"recording_config": {"storage_config": public}})
            assert ok.status_code == 201, ok.text
            ok = client.patch(
                f"{base}/apps/{server.app_id}", json={"storage_config": {**s3, "endpoint": "https://s3.example.com"}}
            )
            assert ok.status_code == 200, ok.text  # a name that does not resolve here is not judged

            for path in ESCAPES:
                _rejects(
                    client,
                    "PATCH",
                    f"{base}/apps/{server.app_id}",
                    {"storage_config": {**public, "path": path}},
                    "storage_config.path",
                )
                _rejects(
                    client,
                    "POST",
                    f"{base}/{server.app_id}/meetings",
                    {"recording_config": {"storage_config": {**public, "path": path}}},
                    "storage_config.path",
                )
                r = client.post(
                    f"{server.base_url}/v2/recordings/start",
                    json={"roomId": meeting, "awsDirPath": path},
                    headers={"Authorization": server.api_token},
                )
                assert r.status_code == 400 and "awsDirPath" in r.text, (path, r.text)
            for prefix in ("../x", "a/b", "a\\b", "%2e%2e%2fx", "/abs"):
                r = client.post(
                    f"{base}/{server.app_id}/recordings", json={"meeting_id": meeting, "file_name_prefix": prefix}
                )
                assert r.status_code == 400, (prefix, r.text)
    finally:
        stop_server(server)


async def test_upload_rechecks_the_storage_host(tmp_path: Path) -> None:
    """A storage_config accepted earlier whose host now resolves to a non-public address: ERRORED, not uploaded."""
    deps = await open_deps(Settings(data_dir=tmp_path, secret_key="s" * 40, outbound_allow_cidrs=""))
    try:
        for sftp in started(lambda: SFTPServer(tmp_path / "sftp")):
            rec_id, _ = await stopped_recording(deps, {**sftp.config("PASSWORD"), "host": "localhost"})
            await upload_recording(deps, rec_id)
            status, error = await _status(deps, rec_id)
            assert status == "ERRORED" and error and "resolves to 127.0.0.1" in error, error
            assert not any((tmp_path / "sftp").rglob("*.webm"))
    finally:
        await deps.engine.dispose()
