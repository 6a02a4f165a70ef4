"""SFTP storage with ``asyncssh``.

``auth_method`` ``KEY`` (``private_key``; ``password`` is its passphrase) or ``PASSWORD``. Uploads write
``<key>.part`` with a bounded number of writes in flight and rename it into place when complete, so a
reader never sees half a file. SFTP cannot presign, so downloads go through roomtape's signed URLs (the
download route streams from SFTP with ranges).

The server's host key is not pinned (the RealtimeKit ``storage_config`` has no field for it): the
connection is encrypted but not protected from an active man in the middle.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh

from roomtape.errors import NotFound, RoomtapeError, Unavailable
from roomtape.storage.base import ObjectStat, SignedUrl, check_key, local_size
from roomtape.storage.signer import DownloadSigner

_READ_CHUNK = 1024 * 1024
_BLOCK_SIZE = 256 * 1024
_MAX_REQUESTS = 16


def _map(exc: BaseException, key: str) -> RoomtapeError:
    """Translate an asyncssh error (never with the password or key in it)."""
    if isinstance(exc, asyncssh.SFTPNoSuchFile):
        return NotFound(f"no object {key!r}")
    if isinstance(exc, asyncssh.PermissionDenied):
        return RoomtapeError("sftp server refused the credentials", retryable=False)
    if isinstance(exc, asyncssh.KeyImportError):
        return RoomtapeError("sftp private_key cannot be read (wrong format or passphrase)", retryable=False)
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return RoomtapeError(f"sftp permission denied for {key!r}", retryable=False)
    if isinstance(exc, asyncssh.SFTPError):
        return Unavailable(f"sftp error {exc.code}: {exc.reason}")
    if isinstance(exc, OSError | asyncssh.Error | asyncio.TimeoutError):
        return Unavailable(f"sftp server is unreachable: {type(exc).__name__}")
    return RoomtapeError(f"sftp error: {type(exc).__name__}", retryable=False)


class SFTPStorage:
    """A directory on an SFTP server; keys are paths relative to the login directory."""

    name = "sftp"

    def __init__(
        self,
        host: str,
        *,
        port: int = 22,
        username: str,
        signer: DownloadSigner,
        scope: str,
        password: str | None = None,
        private_key: str | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._private_key = private_key
        self._signer = signer
        self._scope = scope
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None
        self._lock = asyncio.Lock()

    async def _client(self, key: str) -> asyncssh.SFTPClient:
        async with self._lock:
            if self._sftp is not None and self._conn is not None and not self._conn.is_closed():
                return self._sftp
            options: dict[str, Any] = {
                "port": self._port,
                "username": self._username,
                "known_hosts": None,
                "connect_timeout": 10,
            }
            try:
                if self._private_key:
                    options["client_keys"] = [asyncssh.import_private_key(self._private_key, self._password)]
                    options["password"] = None
                    options["preferred_auth"] = "publickey"
                else:
                    options["password"] = self._password
                    options["client_keys"] = None
                    options["preferred_auth"] = "password,keyboard-interactive"
                self._conn = await asyncssh.connect(self._host, **options)
                self._sftp = await self._conn.start_sftp_client()
            except RoomtapeError:
                raise
            except Exception as exc:
                raise _map(exc, key) from exc
            return self._sftp

    async def _reset(self) -> None:
        if self._conn is not None:
            self._conn.close()
        self._conn = None
        self._sftp = None

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        """Write ``key.part`` chunk by chunk, then rename it to ``key``."""
        check_key(key)
        local_size(local_path)
        sftp = await self._client(key)
        part = key + ".part"
        try:
            parent = posixpath.dirname(key)
            if parent:
                await sftp.makedirs(parent, exist_ok=True)
            # asyncssh's parallel put: at most _MAX_REQUESTS writes of _BLOCK_SIZE in flight. Not sparse:
            # asyncssh's sparse copy skips holes and never extends the file over a trailing one.
            await sftp.put(str(local_path), part, block_size=_BLOCK_SIZE, max_requests=_MAX_REQUESTS, sparse=False)
            if await sftp.exists(key):
                await sftp.remove(key)
            await sftp.rename(part, key)
        except RoomtapeError:
            raise
        except Exception as exc:
            await self._reset()
            raise _map(exc, key) from exc
        return await self.stat(key)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Read the remote file from ``start``."""
        check_key(key)
        sftp = await self._client(key)
        try:
            async with sftp.open(key, "rb") as remote:
                await remote.seek(start)
                remaining = None if end is None else end - start + 1
                while remaining is None or remaining > 0:
                    n = _READ_CHUNK if remaining is None else min(_READ_CHUNK, remaining)
                    chunk = await remote.read(n)
                    if not chunk:
                        break
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk if isinstance(chunk, bytes) else chunk.encode()
        except RoomtapeError:
            raise
        except Exception as exc:
            raise _map(exc, key) from exc

    async def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        try:
            await self.stat(key)
        except NotFound:
            return False
        return True

    async def stat(self, key: str) -> ObjectStat:
        """Size from SFTP ``stat`` (SFTP has no checksums)."""
        check_key(key)
        sftp = await self._client(key)
        try:
            attrs = await sftp.stat(key)
        except Exception as exc:
            if not isinstance(exc, asyncssh.SFTPError):
                await self._reset()
            raise _map(exc, key) from exc
        return ObjectStat(key=key, size=int(attrs.size or 0))

    async def delete(self, key: str) -> None:
        """Remove the file; a missing one is fine."""
        check_key(key)
        sftp = await self._client(key)
        try:
            await sftp.remove(key)
        except asyncssh.SFTPNoSuchFile:
            return
        except Exception as exc:
            raise _map(exc, key) from exc

    async def signed_url(self, key: str, expires_in: int) -> SignedUrl:
        """A roomtape download URL (SFTP cannot presign)."""
        check_key(key)
        return self._signer.sign(self._scope, key, expires_in)

    async def close(self) -> None:
        """Close the SSH connection."""
        if self._conn is not None:
            self._conn.close()
            await self._conn.wait_closed()
        self._conn = None
        self._sftp = None
