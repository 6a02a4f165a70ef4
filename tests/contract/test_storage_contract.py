"""One contract suite for every storage backend, each against a real server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.contract.conftest import SIGNER
from tests.contract.storage_servers import free_port

from roomtape.errors import InvalidInput, NotFound, RoomtapeError, Unavailable
from roomtape.storage.base import StorageBackend
from roomtape.storage.registry import build_backend

pytestmark = pytest.mark.timeout(120)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def _read(store: StorageBackend, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join([chunk async for chunk in store.open(key, start, end)])


async def test_put_stat_open_delete(store: StorageBackend, tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    key = "sess-1/part 1/audio/0001 ünï.webm"
    stat = await store.put_file(_write(tmp_path / "a.webm", data), key)
    assert stat.size == len(data)
    assert stat.md5 in (None, hashlib.md5(data).hexdigest())
    assert await store.exists(key)
    again = await store.stat(key)
    assert again.size == len(data)
    assert again.md5 in (None, hashlib.md5(data).hexdigest())
    assert await _read(store, key) == data
    await store.delete(key)
    assert not await store.exists(key)
    await store.delete(key)  # deleting twice is fine


async def test_ranged_reads(store: StorageBackend, tmp_path: Path) -> None:
    data = os.urandom(5 * 1024 * 1024 + 3)
    await store.put_file(_write(tmp_path / "r.bin", data), "r/file.bin")
    assert await _read(store, "r/file.bin", 0, 0) == data[:1]
    assert await _read(store, "r/file.bin", 100, 199) == data[100:200]
    assert await _read(store, "r/file.bin", len(data) - 10) == data[-10:]
    assert (
        await _read(store, "r/file.bin", 1024 * 1024 - 5, 4 * 1024 * 1024 + 5)
        == data[1024 * 1024 - 5 : 4 * 1024 * 1024 + 6]
    )


async def test_overwrite_replaces_content(store: StorageBackend, tmp_path: Path) -> None:
    await store.put_file(_write(tmp_path / "1", b"first version, longer"), "o/x.json")
    await store.put_file(_write(tmp_path / "2", b"second"), "o/x.json")
    assert await _read(store, "o/x.json") == b"second"
    assert (await store.stat("o/x.json")).size == 6


async def test_empty_file(store: StorageBackend, tmp_path: Path) -> None:
    await store.put_file(_write(tmp_path / "e", b""), "e/empty.txt")
    assert (await store.stat("e/empty.txt")).size == 0


async def test_missing_object_is_not_found(store: StorageBackend) -> None:
    assert not await store.exists("nope/none.webm")
    with pytest.raises(NotFound):
        await store.stat("nope/none.webm")
    with pytest.raises(NotFound):
        await _read(store, "nope/none.webm")


@pytest.mark.parametrize("key", ["../escape", "/abs/path", "a/../../b", "a//b", "a\\b", "a/%2e%2e/b", "a%2Fb", ""])
async def test_unsafe_keys_are_refused(store: StorageBackend, tmp_path: Path, key: str) -> None:
    src = _write(tmp_path / "k", b"x")
    with pytest.raises(InvalidInput):
        await store.put_file(src, key)
    with pytest.raises(InvalidInput):
        await store.exists(key)


async def test_signed_url_downloads(store: StorageBackend, tmp_path: Path) -> None:
    data = os.urandom(100_000)
    await store.put_file(_write(tmp_path / "s", data), "signed/file.webm")
    signed = await store.signed_url("signed/file.webm", 600)
    assert signed.expires_at.timestamp() == pytest.approx(time.time() + 600, abs=5)
    if store.name in ("local", "sftp"):
        # Served by roomtape's download route (tested in tests/integration/storage); here: the signature.
        assert signed.url.startswith("http://127.0.0.1:1/downloads/default/signed/file.webm?")
        query = dict(httpx.URL(signed.url).params)
        SIGNER.verify("default", "signed/file.webm", query["exp"], query["sig"])
        return
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(signed.url)
    assert r.status_code == 200, r.text[:300]
    assert r.content == data


async def test_local_file_missing_is_permanent(store: StorageBackend, tmp_path: Path) -> None:
    with pytest.raises(RoomtapeError) as info:
        await store.put_file(tmp_path / "does-not-exist", "x/y")
    assert not info.value.retryable


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure", "sftp"])
async def test_server_down_is_unavailable(kind: str, tmp_path: Path) -> None:
    port = free_port()  # nothing listens here
    endpoint = f"http://127.0.0.1:{port}"
    config: dict[str, Any] = {
        "s3": {
            "type": "aws",
            "bucket": "b",
            "endpoint": endpoint,
            "path_style": True,
            "access_key": "a",
            "secret": "s",
        },
        "gcs": {"type": "gcs", "bucket": "b", "endpoint": endpoint},
        "azure": {
            "type": "azure",
            "access_key": "acct",
            "secret": "a2V5",
            "bucket": "c",
            "endpoint": endpoint + "/acct",
        },
        "sftp": {
            "type": "sftp",
            "host": "127.0.0.1",
            "port": port,
            "username": "u",
            "auth_method": "PASSWORD",
            "password": "p",
        },
    }[kind]
    backend = build_backend(config, signer=SIGNER, scope="default", data_dir=tmp_path)
    try:
        with pytest.raises(Unavailable) as info:
            await backend.put_file(_write(tmp_path / "f", b"x"), "k/f")
        assert info.value.retryable
        assert "secret" not in str(info.value) and "a2V5" not in str(info.value)
    finally:
        await backend.close()


async def test_sftp_wrong_password_is_permanent(sftp_server: Any, tmp_path: Path) -> None:
    config = {**sftp_server.config("PASSWORD"), "password": "wrong-password-123"}
    backend = build_backend(config, signer=SIGNER, scope="default", data_dir=tmp_path)
    try:
        with pytest.raises(RoomtapeError) as info:
            await backend.put_file(_write(tmp_path / "f", b"x"), "k/f")
        assert not info.value.retryable
        assert "wrong-password-123" not in str(info.value)
    finally:
        await backend.close()


BIG_FILE_BYTES = int(os.environ.get("ROOMTAPE_TEST_BIG_FILE_MB", "1024")) * 1024 * 1024
RSS_GROWTH_LIMIT = 64 * 1024 * 1024
UPLOADER = Path(__file__).with_name("storage_uploader.py")


# gcp-storage-emulator keeps whole objects in the test process's memory; GCS uploads use the same fixed-size
# resumable chunks as S3 parts. SFTP's two auth methods share the upload path: once is enough.
@pytest.mark.timeout(180)
@pytest.mark.parametrize("storage_config", ["local", "s3", "azure", "sftp-key"], indirect=True)
async def test_big_file_uploads_in_flat_memory(storage_config: dict[str, Any], tmp_path: Path) -> None:
    """A subprocess uploads a 1 GiB file while its RSS may grow by at most 64 MiB; VmHWM is measured."""
    big = tmp_path / "big.webm"
    with big.open("wb") as f:  # sparse: cheap to make, still read byte by byte by the uploader
        f.write(os.urandom(1 << 20))
        f.truncate(BIG_FILE_BYTES)
    started = time.monotonic()
    out = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, str(UPLOADER), str(big), "big/file.webm"],
        input=json.dumps({**storage_config, "data_dir": str(tmp_path)}),
        capture_output=True,
        text=True,
        timeout=170,
        check=False,
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    growth = result["peak_rss"] - result["rss_before"]
    print(
        f"\n{storage_config['type']}: {BIG_FILE_BYTES >> 20} MiB in {elapsed:.1f}s, "
        f"RSS before {result['rss_before'] >> 20} MiB, peak {result['peak_rss'] >> 20} MiB, "
        f"growth {growth >> 20} MiB"
    )
    assert result["size"] == BIG_FILE_BYTES
    assert growth < RSS_GROWTH_LIMIT
