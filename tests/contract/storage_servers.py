"""Real storage servers on loopback for the contract suite (and the job tests): moto's S3 server, Azurite,
gcp-storage-emulator and an asyncssh SFTP server. Each starts on a free port and stops after the tests."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

ROOT = Path(__file__).resolve().parents[2]
AZURITE_ACCOUNT = "devstoreaccount1"
# Azurite's fixed, publicly documented development key (not a secret).
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def azurite_bin() -> Path | None:
    path = ROOT / "node_modules" / ".bin" / "azurite-blob"
    if path.exists():
        return path
    found = shutil.which("azurite-blob")
    return Path(found) if found else None


class MotoS3:
    """moto's S3 server in a thread; can be stopped and started again on the same port."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.port = free_port()
        self._cls = ThreadedMotoServer
        self._server: Any = None
        self.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server = self._cls(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        wait_port(self.port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def create_bucket(self, name: str) -> None:
        import boto3

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )
        client.create_bucket(Bucket=name)

    def config(self, bucket: str) -> dict[str, Any]:
        return {
            "type": "aws",
            "bucket": bucket,
            "region": "us-east-1",
            "endpoint": self.endpoint,
            "path_style": True,
            "access_key": "AKIATESTROOMTAPE",
            "secret": "roomtape-test-secret-key",
        }


class Azurite:
    """Azurite's blob service as a subprocess storing under ``location``."""

    def __init__(self, location: Path) -> None:
        binary = azurite_bin()
        if binary is None:
            raise RuntimeError("azurite is not installed: npm install --no-save azurite")
        self.port = free_port()
        location.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [
                str(binary),
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.port),
                "--location",
                str(location),
                "--skipApiVersionCheck",
                "--loose",
                "--silent",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, 30)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{AZURITE_ACCOUNT}"

    def create_container(self, name: str) -> None:
        from azure.storage.blob import BlobServiceClient

        svc = BlobServiceClient(self.endpoint, credential={"account_name": AZURITE_ACCOUNT, "account_key": AZURITE_KEY})
        svc.create_container(name)
        svc.close()

    def config(self, container: str) -> dict[str, Any]:
        return {
            "type": "azure",
            "access_key": AZURITE_ACCOUNT,
            "secret": AZURITE_KEY,
            "bucket": container,
            "endpoint": self.endpoint,
        }

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def service_account_json() -> str:
    """A made-up service-account key: enough to sign V4 URLs locally; the emulator checks no signature."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return json.dumps(
        {
            "type": "service_account",
            "project_id": "roomtape",
            "private_key_id": "k1",
            "private_key": pem,
            "client_email": "roomtape@roomtape.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": "http://127.0.0.1:9/token",
        }
    )


class GCSEmulator:
    """gcp-storage-emulator in a thread, keeping objects in memory."""

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        self.port = free_port()
        self._server = create_server("127.0.0.1", self.port, in_memory=True)
        self._server.start()
        wait_port(self.port)
        self.sa_json = service_account_json()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def create_bucket(self, name: str) -> None:
        import httpx

        r = httpx.post(f"{self.endpoint}/storage/v1/b?project=roomtape", json={"name": name})
        assert r.status_code in (200, 409), r.text

    def config(self, bucket: str) -> dict[str, Any]:
        return {"type": "gcs", "bucket": bucket, "endpoint": self.endpoint, "secret": self.sa_json}

    def stop(self) -> None:
        self._server.stop()


@dataclass
class SFTPServer:
    """An asyncssh SFTP server on its own event loop thread, chrooted to ``root``, with one user who may log
    in by password or by key."""

    root: Path
    username: str = "rec"
    password: str = field(default_factory=lambda: "pw-" + uuid.uuid4().hex)
    port: int = 0
    client_key_pem: str = ""
    client_key_passphrase: str = field(default_factory=lambda: "kp-" + uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        self.client_key_pem = client_key.export_private_key("openssh", passphrase=self.client_key_passphrase).decode()
        self._authorized = client_key.export_public_key().decode()
        self._host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._acceptor: Any = None
        self.start()

    def start(self) -> None:
        server = self
        authorized = asyncssh.import_authorized_keys(self._authorized)

        class _Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def password_auth_supported(self) -> bool:
                return True

            def validate_password(self, username: str, password: str) -> bool:
                return username == server.username and password == server.password

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                return username == server.username and authorized.validate(key, "127.0.0.1", "127.0.0.1") is not None

        async def run() -> Any:
            return await asyncssh.create_server(
                _Server,
                "127.0.0.1",
                self.port,
                server_host_keys=[self._host_key],
                sftp_factory=lambda chan: asyncssh.SFTPServer(chan, chroot=str(self.root).encode()),
            )

        self._acceptor = asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    def stop(self) -> None:
        if self._acceptor is not None:
            acceptor = self._acceptor

            async def close() -> None:
                acceptor.close()
                await acceptor.wait_closed()

            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
            self._acceptor = None

    def shutdown(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def config(self, auth_method: str) -> dict[str, Any]:
        base = {
            "type": "sftp",
            "host": "127.0.0.1",
            "port": self.port,
            "username": self.username,
            "auth_method": auth_method,
        }
        if auth_method == "KEY":
            return {**base, "private_key": self.client_key_pem, "password": self.client_key_passphrase}
        return {**base, "password": self.password}


def started(factory: Any) -> Iterator[Any]:
    server = factory()
    try:
        yield server
    finally:
        (getattr(server, "shutdown", None) or server.stop)()
