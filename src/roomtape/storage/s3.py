"""S3-compatible storage (``aws``, ``digitalocean``, MinIO and friends) with boto3.

boto3 is synchronous, so every call runs in a worker thread. Uploads use s3transfer's multipart upload:
parts of :data:`~roomtape.storage.base.CHUNK_SIZE`, at most ``_CONCURRENCY`` in flight, so memory stays
near ``CHUNK_SIZE * _CONCURRENCY`` whatever the file size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.exceptions as bce
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from roomtape.errors import NotFound, RoomtapeError, Unavailable
from roomtape.storage.base import CHUNK_SIZE, ObjectStat, SignedUrl, check_key, local_size

_CONCURRENCY = 4
_T = TypeVar("_T")


def _map(exc: Exception, key: str) -> RoomtapeError:
    """Translate a botocore error (never including credentials in the message)."""
    if isinstance(exc, bce.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", ""))
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        if code in ("NoSuchKey", "404", "NotFound"):
            return NotFound(f"no object {key!r}")
        if status >= 500 or status == 429 or code in ("SlowDown", "Throttling", "RequestTimeout"):
            return Unavailable(f"s3 answered {status} {code}")
        return RoomtapeError(f"s3 refused the request: {status} {code}", retryable=False)
    if isinstance(exc, bce.NoCredentialsError | bce.PartialCredentialsError):
        return RoomtapeError("s3 credentials are missing", retryable=False)
    if isinstance(exc, bce.BotoCoreError | OSError):
        return Unavailable(f"s3 is unreachable: {type(exc).__name__}")
    return RoomtapeError(f"s3 error: {type(exc).__name__}", retryable=False)


class S3Storage:
    """One bucket of an S3-compatible service."""

    name = "s3"

    def __init__(
        self,
        bucket: str,
        *,
        region: str | None = None,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        path_style: bool = False,
    ) -> None:
        self.bucket = bucket
        self._client: Any = boto3.session.Session().client(
            "s3",
            region_name=region or "us-east-1",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            config=Config(
                s3={"addressing_style": "path" if path_style else "auto"},
                signature_version="s3v4",
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
            ),
        )
        self._transfer = TransferConfig(
            multipart_threshold=CHUNK_SIZE,
            multipart_chunksize=CHUNK_SIZE,
            max_concurrency=_CONCURRENCY,
            max_io_queue=_CONCURRENCY,
        )

    async def _call(self, key: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except RoomtapeError:
            raise
        except Exception as exc:
            raise _map(exc, key) from exc

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        """Multipart upload from the file (s3transfer reads parts as it sends them)."""
        check_key(key)
        local_size(local_path)
        await self._call(key, self._client.upload_file, str(local_path), self.bucket, key, Config=self._transfer)
        return await self.stat(key)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """A ranged GET, read in chunks."""
        check_key(key)
        rng = f"bytes={start}-{'' if end is None else end}"
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            kwargs["Range"] = rng
        resp = await self._call(key, self._client.get_object, **kwargs)
        body = resp["Body"]
        try:
            while True:
                chunk = await self._call(key, body.read, 1024 * 1024)
                if not chunk:
                    break
                yield chunk
        finally:
            body.close()

    async def exists(self, key: str) -> bool:
        """HEAD the object."""
        try:
            await self.stat(key)
        except NotFound:
            return False
        return True

    async def stat(self, key: str) -> ObjectStat:
        """HEAD: size, and the MD5 when the ETag is one (single-part uploads)."""
        check_key(key)
        head = await self._call(key, self._client.head_object, Bucket=self.bucket, Key=key)
        etag = str(head.get("ETag", "")).strip('"')
        md5 = etag if len(etag) == 32 and "-" not in etag else None
        return ObjectStat(key=key, size=int(head["ContentLength"]), md5=md5)

    async def delete(self, key: str) -> None:
        """DELETE (S3 answers 204 for a missing key too)."""
        check_key(key)
        await self._call(key, self._client.delete_object, Bucket=self.bucket, Key=key)

    async def signed_url(self, key: str, expires_in: int) -> SignedUrl:
        """A SigV4 presigned GET."""
        check_key(key)
        url = await self._call(
            key,
            self._client.generate_presigned_url,
            "get_object",
            Params={"Bucket": self.bucket, "Key": key},
            ExpiresIn=expires_in,
        )
        return SignedUrl(url=str(url), expires_at=datetime.now(UTC) + timedelta(seconds=expires_in))

    async def close(self) -> None:
        """Close the connection pool."""
        self._client.close()
