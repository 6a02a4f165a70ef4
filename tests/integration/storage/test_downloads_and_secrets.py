from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.conftest import Server, start_server, stop_server

from roomtape.storage.local import LocalStorage
from roomtape.storage.signer import DownloadSigner


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("dl")
    server = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}")
    try:
        yield server
    finally:
        stop_server(server)


def _signer(srv: Server) -> DownloadSigner:
    return DownloadSigner((srv.data_dir / "secret.key").read_text().strip(), srv.base_url)


def test_signed_local_download_with_ranges(srv: Server, tmp_path: Path) -> None:
    data = os.urandom(2_000_003)
    src = tmp_path / "f.webm"
    src.write_bytes(data)
    store = LocalStorage(srv.data_dir / "storage", _signer(srv))
    asyncio.run(store.put_file(src, "app/s/p/audio/f.webm"))
    url = asyncio.run(store.signed_url("app/s/p/audio/f.webm", 60)).url
    full = httpx.get(url)
    assert full.status_code == 200 and full.content == data
    assert full.headers["accept-ranges"] == "bytes" and full.headers["content-type"] == "video/webm"
    part = httpx.get(url, headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    assert httpx.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416
    assert httpx.head(url).headers["content-length"] == str(len(data))

    tampered = url.replace("f.webm?", "g.webm?")
    assert httpx.get(tampered).status_code == 403
    sig_flip = url[:-2] + ("AA" if not url.endswith("AA") else "BB")
    assert httpx.get(sig_flip).status_code == 403
    exp = int(httpx.URL(url).params["exp"])
    assert httpx.get(url.replace(f"exp={exp}", f"exp={exp + 1000}")).status_code == 403
    expired = _signer(srv).sign("default", "app/s/p/audio/f.webm", -1).url
    r = httpx.get(expired)
    assert r.status_code == 403 and "expired" in r.text
    other_key = DownloadSigner("another-server-key", srv.base_url).sign("default", "app/s/p/audio/f.webm", 60)
    assert httpx.get(other_key.url).status_code == 403


SECRETS = {
    "access_key": "AKIAPLAINTEXTACCESS77",
    "secret": "plaintext-secret-value-9f8e7d",
    "password": "plaintext-password-31415",
    "private_key": "-----BEGIN OPENSSH PRIVATE KEY-----plaintextkeymaterial271828",
}


def test_storage_secrets_are_write_only(srv: Server) -> None:
    bodies: list[str] = []
    headers = {"Authorization": f"Bearer {srv.api_token}"}
    base = f"{srv.base_url}/accounts/{srv.account_id}/realtime/kit/{srv.app_id}"
    configs = [
        {
            "type": "aws",
            "bucket": "b",
            "region": "us-east-1",
            "access_key": SECRETS["access_key"],
            "secret": SECRETS["secret"],
            "path": "p",
        },
        {
            "type": "sftp",
            "host": "sftp.example.invalid",
            "port": 22,
            "username": "u",
            "auth_method": "KEY",
            "private_key": SECRETS["private_key"],
            "password": SECRETS["password"],
        },
        {
            "type": "sftp",
            "host": "sftp.example.invalid",
            "username": "u",
            "auth_method": "PASSWORD",
            "password": SECRETS["password"],
        },
    ]
    with httpx.Client(headers=headers) as client:
        for config in configs:
            r = client.post(f"{base}/meetings", json={"title": "s", "recording_config": {"storage_config": config}})
            bodies.append(r.text)
            assert r.status_code in (200, 201), r.text
            mid = r.json()["data"]["id"]
            bodies.append(client.get(f"{base}/meetings/{mid}").text)
            bodies.append(client.patch(f"{base}/meetings/{mid}", json={"title": "t"}).text)
            bad = {**config, "type": "nope"}
            bodies.append(client.post(f"{base}/meetings", json={"recording_config": {"storage_config": bad}}).text)
        bodies.append(client.get(f"{base}/meetings").text)
    assert any('"bucket":"b"' in b.replace(" ", "") for b in bodies)
    log = (srv.data_dir / "server.log").read_text(errors="replace")
    raw = b"".join(p.read_bytes() for p in srv.data_dir.glob("roomtape.db*"))
    for name, value in SECRETS.items():
        for body in bodies:
            assert value not in body, f"{name} in an API response"
        assert value not in log, f"{name} in the server log"
        assert value.encode() not in raw, f"{name} in the database file"
