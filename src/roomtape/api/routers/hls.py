"""``GET /v1/livestreams/{livestream_id}/hls/{token}/{file}``: a livestream's HLS playlist and segments.

The token (``roomtape.livestream.playback``) is the only credential: a tampered or expired one is 403, a file
that is not the stream's (another name, a segment already rotated out, a stream that ended and was cleaned
up) is 404. The playlist names its segments relatively, so they are fetched with the same token.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response

from roomtape.api.context import get_context
from roomtape.api.errors import error_response
from roomtape.errors import Forbidden
from roomtape.livestream.playback import HLS_FILE

router = APIRouter(tags=["livestreams"])

_PLAYLIST_TYPE = "application/vnd.apple.mpegurl"
_SEGMENT_TYPE = "video/mp2t"


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # not there, or rotated out since the playlist named it
        return None


@router.get(
    "/v1/livestreams/{livestream_id}/hls/{token}/{name}",
    summary="A livestream's HLS playlist or segment (signed URL)",
    include_in_schema=False,
)
async def hls_file(livestream_id: str, token: str, name: str, request: Request) -> Response:
    """Serve one HLS file of a livestream named by a signed playback URL."""
    service = get_context(request).livestream_service
    if service is None:
        return error_response(404, "no such livestream")
    try:
        service.signer.verify(livestream_id, token)
    except Forbidden as exc:
        return error_response(403, exc.message)
    if not HLS_FILE.match(name) or not livestream_id.replace("-", "").isalnum():
        return error_response(404, "no such file")
    path = service.hls_dir(livestream_id) / name
    playlist = name.endswith(".m3u8")
    data = await asyncio.to_thread(_read, path)
    if data is None:
        return error_response(404, "no such file")
    if not playlist:
        service.served(livestream_id, service.segment_seconds(livestream_id, name))
    return Response(
        data,
        media_type=_PLAYLIST_TYPE if playlist else _SEGMENT_TYPE,
        # Any origin may play it: the signed URL is the credential (players embedded in other sites).
        headers={
            "Cache-Control": "no-cache" if playlist else "private, max-age=60",
            "Access-Control-Allow-Origin": "*",
        },
    )
