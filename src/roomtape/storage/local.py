"""Local directory storage (the embedded default): objects are files under one root directory."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from roomtape.errors import NotFound, RoomtapeError, Unavailable
from roomtape.storage.base import CHUNK_SIZE, ObjectStat, SignedUrl, check_key, local_size
from roomtape.storage.signer import DownloadSigner


class LocalStorage:
    """Files under ``root``; downloads through roomtape's signed URLs."""

    name = "local"

    def __init__(self, root: Path, signer: DownloadSigner, scope: str = "default") -> None:
        self.root = root.resolve()
        self._signer = signer
        self._scope = scope

    def path_of(self, key: str) -> Path:
        """The file that holds ``key`` (never outside the root)."""
        path = (self.root / check_key(key)).resolve()
        if not path.is_relative_to(self.root):
            raise RoomtapeError("key escapes the storage root")
        return path

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        """Copy through a temporary file and rename, so a reader never sees half a file."""
        target = self.path_of(key)
        size = local_size(local_path)

        def copy() -> None:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            shutil.copyfile(local_path, tmp)  # sendfile(2) on Linux: the bytes never enter this process
            with tmp.open("rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)

        try:
            await asyncio.to_thread(copy)
        except OSError as exc:
            raise Unavailable(f"local storage write failed: {exc.strerror}") from exc
        return ObjectStat(key=key, size=size)

    async def take_file(self, local_path: Path, key: str) -> ObjectStat:
        """Hard-link the finished file into place (`~roomtape.storage.base.TakesFiles`); copy across file systems.

        Why: a copy of a long meeting's composite writes every byte again, and its fsync then waits for all of
        them to reach the disk (1.9 GB took ~13 s here). A link writes no data, and the fsync only flushes what
        the writer left dirty (the kernel writes older pages back within 30 s). The caller deletes its own name
        right after, so nothing ever writes to the shared data.
        """
        target = self.path_of(key)
        size = local_size(local_path)

        def link() -> bool:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.part")
            tmp.unlink(missing_ok=True)
            try:
                os.link(local_path, tmp)
            except OSError as exc:
                if exc.errno in (errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP):
                    return False  # another file system, or one without hard links: copy instead
                raise
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, target)
            return True

        try:
            linked = await asyncio.to_thread(link)
        except OSError as exc:
            raise Unavailable(f"local storage write failed: {exc.strerror}") from exc
        if not linked:
            return await self.put_file(local_path, key)
        return ObjectStat(key=key, size=size)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Read the file in chunks, in a thread."""
        path = self.path_of(key)
        try:
            f = await asyncio.to_thread(path.open, "rb")
        except FileNotFoundError as exc:
            raise NotFound(f"no object {key!r}") from exc
        try:
            await asyncio.to_thread(f.seek, start)
            remaining = None if end is None else end - start + 1
            while remaining is None or remaining > 0:
                n = CHUNK_SIZE if remaining is None else min(CHUNK_SIZE, remaining)
                chunk = await asyncio.to_thread(f.read, n)
                if not chunk:
                    break
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            f.close()

    async def exists(self, key: str) -> bool:
        """Whether the file exists."""
        return self.path_of(key).is_file()

    async def stat(self, key: str) -> ObjectStat:
        """Size from the file system; no stored checksum."""
        try:
            return ObjectStat(key=key, size=self.path_of(key).stat().st_size)
        except FileNotFoundError as exc:
            raise NotFound(f"no object {key!r}") from exc

    async def delete(self, key: str) -> None:
        """Remove the file (and empty parent directories up to the root)."""
        path = self.path_of(key)
        path.unlink(missing_ok=True)
        parent = path.parent
        while parent != self.root and parent.is_relative_to(self.root):
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    async def signed_url(self, key: str, expires_in: int) -> SignedUrl:
        """A roomtape download URL."""
        check_key(key)
        return self._signer.sign(self._scope, key, expires_in)

    async def close(self) -> None:
        """Nothing to release."""
