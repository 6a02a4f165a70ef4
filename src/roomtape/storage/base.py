"""The storage seam: one async protocol every backend implements, and what they share.

A key is a relative, ``/``-separated object name (``{prefix}/{session}/{participant}/{kind}/{file}``); it
can never name anything outside the backend's root (see :func:`check_key`).

Errors of the libraries underneath are translated at each backend's boundary into ``roomtape.errors``:

```
NotFound       the object does not exist
Unavailable    the storage service cannot be reached or answered 5xx/throttled; retry later
InvalidInput   the key or the configuration is not acceptable
RoomtapeError  anything else the backend refuses for good (bad credentials, no such bucket): do not retry
```
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

from roomtape.errors import InvalidInput

CHUNK_SIZE = 8 * 1024 * 1024
"""Bytes read from a local file at a time; multipart uploads use parts of this size. S3 needs parts of
at least 5 MiB except the last one, Azure blocks and GCS resumable chunks must be multiples of 256 KiB."""


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What a backend knows about a stored object."""

    key: str
    """The object's key."""
    size: int
    """Its size in bytes."""
    md5: str | None = None
    """Hex MD5 of the content when the backend reports one for the object (not multipart S3 ETags)."""


@dataclass(frozen=True, slots=True)
class SignedUrl:
    """A URL that downloads one object without credentials until it expires."""

    url: str
    """The URL."""
    expires_at: datetime
    """When it stops working (UTC)."""


@runtime_checkable
class StorageBackend(Protocol):
    """Where finished recordings go. Every method is safe to call again after a failure."""

    name: str
    """The backend's kind: ``local``, ``s3``, ``gcs``, ``azure`` or ``sftp``."""

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        """Upload ``local_path`` to ``key`` (overwriting), holding at most a few chunks in memory.

        Returns the stat of the stored object as the backend reports it after the upload.
        """
        ...

    def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Stream the object's bytes ``start`` .. ``end`` (inclusive; ``None`` = to the end)."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether ``key`` exists."""
        ...

    async def stat(self, key: str) -> ObjectStat:
        """Size (and checksum when the backend has one) of ``key``; ``NotFound`` when it is missing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; removing a missing object is not an error."""
        ...

    async def signed_url(self, key: str, expires_in: int) -> SignedUrl:
        """A download URL for ``key`` valid for ``expires_in`` seconds."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


@runtime_checkable
class TakesFiles(Protocol):
    """A backend that can take over a finished local file instead of copying it.

    Local storage on the same file system does it by a hard link: no bytes copied. The uploader uses it for
    files it deletes right after the upload is verified, so the stored object and the local name share the data
    only for that moment. A backend that cannot take a given file (another file system) copies it, as
    `StorageBackend.put_file` does.
    """

    async def take_file(self, local_path: Path, key: str) -> ObjectStat:
        """Store the finished file ``local_path`` at ``key`` (overwriting) without copying where possible."""
        ...


def check_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object name, else raise ``InvalidInput``.

    Refused: empty names, absolute paths, ``.``/``..`` segments, backslashes, NUL and control characters,
    and percent-encoded separators (``%2f``, ``%5c``) that another layer might decode later.
    """
    lowered = key.lower()
    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or any(ord(c) < 32 for c in key)
        or "%2f" in lowered
        or "%5c" in lowered
        or "%2e" in lowered
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise InvalidInput(f"not a valid storage key: {key!r}")
    return key


def join_key(*parts: str | None) -> str:
    """Join key segments with ``/``, dropping empty ones and outer slashes, then :func:`check_key` it."""
    segments = [p.strip("/") for p in parts if p and p.strip("/")]
    return check_key("/".join(segments))


def file_md5(path: Path) -> str:
    """Hex MD5 of a local file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()


def local_size(path: Path) -> int:
    """Size of a local file; ``InvalidInput`` when it does not exist."""
    try:
        return path.stat().st_size
    except FileNotFoundError as exc:
        raise InvalidInput(f"local file missing: {path.name}") from exc


async def download_file(backend: StorageBackend, key: str, local: Path) -> int:
    """Copy ``key`` into the local file ``local`` (written as ``local.part``, then renamed into place).

    Returns:
        The bytes written.
    """
    local.parent.mkdir(parents=True, exist_ok=True)
    tmp = local.with_name(local.name + ".part")
    size = 0
    f = await asyncio.to_thread(tmp.open, "wb")
    try:
        async for chunk in backend.open(key):
            await asyncio.to_thread(f.write, chunk)  # disk writes off the event loop
            size += len(chunk)
    except BaseException:
        f.close()
        tmp.unlink(missing_ok=True)
        raise
    f.close()
    tmp.replace(local)
    return size
