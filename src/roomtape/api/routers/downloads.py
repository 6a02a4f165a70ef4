"""Signed download URLs for storage that cannot presign (local directory, SFTP), with HTTP Range.

``GET /downloads/{scope}/{key}?exp=&sig=``: the signature (``storage.signer``) is the only credential, so a
tampered or expired URL is ``403``. ``scope`` ``default`` is the server's storage; ``rec-<id>`` is the
recording's own ``storage_config``.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.context import ServerContext, get_context, get_db
from roomtape.api.errors import error_response
from roomtape.db.models import Recording
from roomtape.errors import Forbidden, NotFound
from roomtape.storage.base import StorageBackend
from roomtape.storage.registry import DEFAULT_SCOPE, RECORDING_SCOPE_PREFIX, default_storage, storage_for
from roomtape.storage.signer import DownloadSigner

router = APIRouter(tags=["downloads"])
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_TYPES = {
    "webm": "video/webm",
    "mp4": "video/mp4",
    "mkv": "video/x-matroska",
    "ogg": "audio/ogg",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "aac": "audio/aac",
    "json": "application/json",
    "vtt": "text/vtt",
    "srt": "application/x-subrip",
    "csv": "text/csv; charset=utf-8",
    "txt": "text/plain; charset=utf-8",
}


def signer_of(ctx: ServerContext) -> DownloadSigner:
    """The server's download-URL signer."""
    return DownloadSigner(ctx.secret_key, ctx.settings.resolved_public_url)


async def _backend(ctx: ServerContext, db: AsyncSession, scope: str) -> StorageBackend:
    signer = signer_of(ctx)
    if scope == DEFAULT_SCOPE:
        return default_storage(ctx.settings, signer)[0]
    if scope.startswith(RECORDING_SCOPE_PREFIX):
        rec = await db.get(Recording, scope[len(RECORDING_SCOPE_PREFIX) :])
        if rec is None:
            raise NotFound("no such download")
        return storage_for(
            ctx.settings,
            ctx.box,
            signer,
            recording_id=rec.id,
            app_id=rec.app_id,
            storage_config=rec.storage_config,
            bucket_dir_path=rec.config.get("bucket_dir_path"),
        ).backend
    raise NotFound("no such download")


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end) inclusive for one ``bytes=`` range; ``None`` when unsatisfiable. Multi-ranges → whole."""
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return (0, size - 1) if size else None
    first, last = m.group(1), m.group(2)
    if not first:
        n = int(last)
        return (max(0, size - n), size - 1) if n and size else None
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    return (start, end) if start <= end and start < size else None


@router.api_route(
    "/downloads/{scope}/{key:path}", methods=["GET", "HEAD"], summary="Download a file", include_in_schema=False
)
async def download(
    scope: str,
    key: str,
    request: Request,
    exp: str = "",
    sig: str = "",
    ctx: ServerContext = Depends(get_context),
    db: AsyncSession = Depends(get_db),
) -> Response:
    """Stream the file named by a signed URL; honours a single ``Range: bytes=`` range."""
    try:
        signer_of(ctx).verify(scope, key, exp, sig)
    except Forbidden as exc:
        return error_response(403, exc.message)
    backend = await _backend(ctx, db, scope)
    await db.close()
    try:
        stat = await backend.stat(key)
    except BaseException:
        await backend.close()
        raise
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Disposition": f'attachment; filename="{key.rsplit("/", 1)[-1]}"',
        "Cache-Control": "private, no-store",
    }
    media_type = _TYPES.get(key.rsplit(".", 1)[-1].lower(), "application/octet-stream")
    start, end, status = 0, stat.size - 1, 200
    rng = request.headers.get("range")
    if rng is not None:
        parsed = _parse_range(rng, stat.size)
        if parsed is None:
            await backend.close()
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{stat.size}"})
        start, end = parsed
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{stat.size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    if request.method == "HEAD" or stat.size == 0:
        await backend.close()
        return Response(status_code=status, headers=headers, media_type=media_type)

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in backend.open(key, start, end):
                yield chunk
        finally:
            await backend.close()

    return StreamingResponse(body(), status_code=status, headers=headers, media_type=media_type)
