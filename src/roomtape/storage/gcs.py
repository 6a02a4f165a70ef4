"""Google Cloud Storage (and GCS emulators) with ``google-cloud-storage``.

The client is synchronous, so calls run in worker threads. Uploads are resumable uploads in chunks of
:data:`~roomtape.storage.base.CHUNK_SIZE` (a multiple of 256 KiB, as GCS requires): memory holds one chunk.

Credentials: ``secret`` holds a service-account JSON key. With a custom ``endpoint`` (an emulator) the
client talks anonymously and the key, if given, is used only to sign download URLs (V4 signing is local
RSA, no network).
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as gauth
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from roomtape.errors import NotFound, RoomtapeError, Unavailable
from roomtape.storage.base import CHUNK_SIZE, ObjectStat, SignedUrl, check_key, local_size

_T = TypeVar("_T")
_READ_CHUNK = 4 * 1024 * 1024
_RETRY = DEFAULT_RETRY.with_timeout(5.0)
"""The client's own retries give up after 5 s (its default is 120 s); the upload job retries for longer."""


def _map(exc: Exception, key: str) -> RoomtapeError:
    """Translate a Google client error."""
    if isinstance(exc, gexc.NotFound):
        return NotFound(f"no object {key!r}")
    if isinstance(exc, gexc.RetryError):
        return Unavailable(f"gcs is unreachable: {type(exc.cause).__name__}")
    if isinstance(exc, gexc.ServerError | gexc.TooManyRequests):
        return Unavailable(f"gcs answered {exc.code}")
    if isinstance(exc, requests.ConnectionError | requests.Timeout | gauth.TransportError | OSError):
        return Unavailable(f"gcs is unreachable: {type(exc).__name__}")
    if isinstance(exc, gexc.GoogleAPICallError):
        return RoomtapeError(f"gcs refused the request: {exc.code}", retryable=False)
    return RoomtapeError(f"gcs error: {type(exc).__name__}", retryable=False)


class GCSStorage:
    """One GCS bucket."""

    name = "gcs"

    def __init__(self, bucket: str, *, service_account_json: str | None = None, endpoint: str | None = None) -> None:
        self._signer: service_account.Credentials | None = None
        if service_account_json:
            try:
                info = json.loads(service_account_json)
                self._signer = service_account.Credentials.from_service_account_info(info)  # type: ignore[no-untyped-call]
            except (ValueError, KeyError) as exc:
                raise RoomtapeError("gcs secret is not a service-account JSON key", retryable=False) from exc
        self._endpoint = endpoint
        if endpoint:
            self._client = gcs.Client(
                project="roomtape",
                credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                client_options={"api_endpoint": endpoint},
            )
        else:
            project = self._signer.project_id if self._signer else None
            self._client = gcs.Client(project=project, credentials=self._signer)
        self._bucket = self._client.bucket(bucket)

    async def _call(self, key: str, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except RoomtapeError:
            raise
        except Exception as exc:
            raise _map(exc, key) from exc

    async def put_file(self, local_path: Path, key: str) -> ObjectStat:
        """A resumable upload in fixed-size chunks."""
        check_key(key)
        local_size(local_path)
        blob = self._bucket.blob(key, chunk_size=CHUNK_SIZE)
        await self._call(key, blob.upload_from_filename, str(local_path), checksum="md5", retry=_RETRY)
        return await self.stat(key)

    async def open(self, key: str, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        """Ranged GETs of a few MiB each."""
        check_key(key)
        last = (await self.stat(key)).size - 1 if end is None else end
        blob = self._bucket.blob(key)
        pos = start
        while pos <= last:
            stop = min(pos + _READ_CHUNK - 1, last)
            chunk = await self._call(key, blob.download_as_bytes, start=pos, end=stop, checksum=None, retry=_RETRY)
            if not chunk:
                break
            yield chunk
            pos += len(chunk)

    async def exists(self, key: str) -> bool:
        """Whether the object exists."""
        check_key(key)
        return bool(await self._call(key, self._bucket.blob(key).exists, retry=_RETRY))

    async def stat(self, key: str) -> ObjectStat:
        """Size and ``md5Hash``."""
        check_key(key)
        blob = await self._call(key, self._bucket.get_blob, key, retry=_RETRY)
        if blob is None:
            raise NotFound(f"no object {key!r}")
        md5 = base64.b64decode(blob.md5_hash).hex() if blob.md5_hash else None
        return ObjectStat(key=key, size=int(blob.size or 0), md5=md5)

    async def delete(self, key: str) -> None:
        """Delete; a missing object is fine."""
        check_key(key)
        try:
            await self._call(key, self._bucket.blob(key).delete, retry=_RETRY)
        except NotFound:
            pass

    async def signed_url(self, key: str, expires_in: int) -> SignedUrl:
        """A V4 signed URL (needs a service-account key)."""
        check_key(key)
        if self._signer is None:
            raise RoomtapeError("gcs signed URLs need a service-account key in storage_config.secret")
        expires = timedelta(seconds=expires_in)
        kwargs: dict[str, Any] = {"version": "v4", "expiration": expires, "credentials": self._signer}
        if self._endpoint:
            kwargs["api_access_endpoint"] = self._endpoint
        url = await self._call(key, self._bucket.blob(key).generate_signed_url, **kwargs)
        return SignedUrl(url=str(url), expires_at=datetime.now(UTC) + expires)

    async def close(self) -> None:
        """Close the HTTP session."""
        self._client.close()
