"""Azure Blob Storage (and Azurite) with ``azure-storage-blob``'s asyncio client.

Uploads stage one block of :data:`~roomtape.storage.base.CHUNK_SIZE` at a time and commit the block list
at the end, with the MD5 of the whole content as ``Content-MD5`` so :meth:`AzureStorage.stat` can report
it. Memory holds one block.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from azure.core import exceptions as az
from azure.storage.blob import BlobBlock, BlobSasPermissions, ContentSettings, generate_blob_sas
from azure.storage.blob.aio import BlobServiceClient, ExponentialRetry

from roomtape.errors import NotFound, RoomtapeError, Unavailable
from roomtape.storage.base import CHUNK_SIZE, ObjectStat, SignedUrl, check_key, local_size

_T = TypeVar("_T")


def _map(exc: Exception, key: str) -> RoomtapeError:
    """Translate an Azure SDK error (messages never carry the account key)."""
    if isinstance(exc, az.ResourceNotFoundError):
        return NotFound(f"no object {key!r}")
    if isinstance(exc, az.ClientAuthenticationError):
        return RoomtapeError("azure refused the credentials", retryable=False)
    if isinstance(exc, az.ServiceRequestError | az.ServiceResponseError | OSError | asyncio.TimeoutError):
        return Unavailable(f"azure is unreachable: {type(exc).__name__}")
    if isinstance(exc, az.HttpResponseError):
        status = exc.status_code or 0
        if status >= 500 or status in (408, 429):
            return Unavailable(f"azure answered {status}")
        code = getattr(exc, "error_code", "") or ""
        return RoomtapeError(f"azure refused the request: {status} {code}".strip(), retryable=False)
    return RoomtapeError(f"azure error: {type(exc).__name__}", retryable=False)


class AzureStorage:
    """One container of a storage account."""

    name = "azure"

    def __init__(self, account: str, account_key: str, container: str, endpoint: str | None = None) -> None:
        self.container = container
        self._account = account
        self._account_key = account_key
        url = endpoint or f"https://{account}.blob.core.windows.net"
        self._service = BlobServiceClient(
            account_url=url,
            credential={"account_name": account, "account_key": account_key},
            # The SDK's default backoff starts at 15 s; the upload job has its own, longer retry loop.
            retry_policy=ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
            connection_timeout=5,
            read_timeout=30,
        )
        self._container = self._service.get_container_client(container)

    async def _call(self, key: str, aw: Awaitable[_T]) -> _T:
        try:
            return await aw
        except RoomtapeError:
            raise
        except Exception as exc:
            raise _map(exc, key) from exc

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        """Stage blocks, then commit them with the content's MD5."""
        check_key(key)
        local_size(local_path)
        blob = self._container.get_blob_client(key)
        digest = hashlib.md5(usedforsecurity=False)
        block_ids: list[str] = []
        with local_path.open("rb") as f:
            index = 0
            while chunk := await asyncio.to_thread(f.read, CHUNK_SIZE):
                digest.update(chunk)
                block_id = base64.b64encode(f"{index:08d}".encode()).decode()
                await self._call(key, blob.stage_block(block_id, chunk, length=len(chunk)))
                block_ids.append(block_id)
                index += 1
        settings = ContentSettings(content_md5=bytearray(digest.digest()))
        await self._call(key, blob.commit_block_list([BlobBlock(b) for b in block_ids], content_settings=settings))
        return await self.stat(key)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """A ranged download, streamed chunk by chunk."""
        check_key(key)
        blob = self._container.get_blob_client(key)
        length = None if end is None else end - start + 1
        downloader: Any = await self._call(key, blob.download_blob(offset=start, length=length))
        try:
            async for chunk in downloader.chunks():
                yield chunk
        except RoomtapeError:
            raise
        except Exception as exc:
            raise _map(exc, key) from exc

    async def exists(self, key: str) -> bool:
        """Whether the blob exists."""
        check_key(key)
        return bool(await self._call(key, self._container.get_blob_client(key).exists()))

    async def stat(self, key: str) -> ObjectStat:
        """Size and ``Content-MD5``."""
        check_key(key)
        props: Any = await self._call(key, self._container.get_blob_client(key).get_blob_properties())
        md5 = props.content_settings.content_md5
        return ObjectStat(key=key, size=int(props.size), md5=bytes(md5).hex() if md5 else None)

    async def delete(self, key: str) -> None:
        """Delete the blob; a missing one is fine."""
        check_key(key)
        try:
            await self._call(key, self._container.get_blob_client(key).delete_blob())
        except NotFound:
            pass

    async def signed_url(self, key: str, expires_in: int) -> SignedUrl:
        """A read-only service SAS for the blob."""
        check_key(key)
        expiry = datetime.now(UTC) + timedelta(seconds=expires_in)
        sas = generate_blob_sas(
            account_name=self._account,
            container_name=self.container,
            blob_name=key,
            account_key=self._account_key,
            permission=BlobSasPermissions(read=True),
            expiry=expiry,
        )
        return SignedUrl(url=f"{self._container.get_blob_client(key).url}?{sas}", expires_at=expiry)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._service.close()
