from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.contract.storage_servers import Azurite, GCSEmulator, MotoS3, SFTPServer, azurite_bin, started

from roomtape.storage.base import StorageBackend
from roomtape.storage.registry import build_backend
from roomtape.storage.signer import DownloadSigner

BACKENDS = ["local", "s3", "gcs", "azure", "sftp-key", "sftp-password"]
SIGNER = DownloadSigner("contract-secret", "http://127.0.0.1:1")


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoS3]:
    yield from started(MotoS3)


@pytest.fixture(scope="session")
def gcs_emulator() -> Iterator[GCSEmulator]:
    yield from started(GCSEmulator)


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    # No skipping: `make test` installs Azurite (scripts/setup-system.sh); its absence is a failure.
    assert azurite_bin() is not None, "azurite is not installed: run `make test` (npm install azurite)"
    yield from started(lambda: Azurite(tmp_path_factory.mktemp("azurite")))


@pytest.fixture(scope="session")
def sftp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SFTPServer]:
    yield from started(lambda: SFTPServer(tmp_path_factory.mktemp("sftp-root")))


@pytest.fixture
def storage_config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """A plaintext storage_config for a fresh bucket/container/directory of the backend under test."""
    kind: str = request.param
    name = f"rt-{uuid.uuid4().hex[:12]}"
    if kind == "local":
        return {"type": "local", "root": str(tmp_path / "store")}
    if kind == "s3":
        s3: MotoS3 = request.getfixturevalue("moto_s3")
        s3.create_bucket(name)
        return s3.config(name)
    if kind == "gcs":
        gcs: GCSEmulator = request.getfixturevalue("gcs_emulator")
        gcs.create_bucket(name)
        return gcs.config(name)
    if kind == "azure":
        az: Azurite = request.getfixturevalue("azurite")
        az.create_container(name)
        return az.config(name)
    sftp: SFTPServer = request.getfixturevalue("sftp_server")
    config = sftp.config("KEY" if kind == "sftp-key" else "PASSWORD")
    return {**config, "path": name}


@pytest.fixture
async def store(storage_config: dict[str, Any], tmp_path: Path) -> AsyncIterator[StorageBackend]:
    backend = build_backend(storage_config, signer=SIGNER, scope="default", data_dir=tmp_path)
    try:
        yield backend
    finally:
        await backend.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage_config" in metafunc.fixturenames and not any(
        m.name == "parametrize" and "storage_config" in str(m.args[0]) for m in metafunc.definition.iter_markers()
    ):
        metafunc.parametrize("storage_config", BACKENDS, indirect=True)
