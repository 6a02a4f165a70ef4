"""The browser side: the front page, the client library and the join page (``/join/{meeting_id}?token=…``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from roomtape import __version__

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC_DIR = WEB_DIR / "static"

router = APIRouter(tags=["web"], include_in_schema=False)

_FRONT_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    # One URL, two answers: caches must keep the HTML and the JSON apart.
    "Vary": "Accept",
}


def wants_html(request: Request) -> bool:
    """Whether the client asked for a page: browsers put ``text/html`` in ``Accept``; API clients do not."""
    return "text/html" in request.headers.get("accept", "").lower()


@router.get("/")
async def front_page(request: Request) -> Response:
    """What roomtape is, with the way into the dashboard and the API docs; JSON links for API clients."""
    if wants_html(request):
        return FileResponse(WEB_DIR / "templates" / "front.html", media_type="text/html", headers=_FRONT_HEADERS)
    links = {"dashboard": "/dashboard", "docs": "/docs", "openapi": "/openapi.json", "health": "/healthz"}
    return JSONResponse({"name": "roomtape", "version": __version__, "links": links}, headers={"Vary": "Accept"})


@router.get("/join/{meeting_id}")
async def join_page(meeting_id: str) -> FileResponse:
    """The join page; the page reads the meeting id from its path and the join token from ``?token=``."""
    return FileResponse(
        WEB_DIR / "templates" / "join.html", media_type="text/html", headers={"Cache-Control": "no-store"}
    )


def static_files() -> StaticFiles:
    """The client library, page scripts and styles, served at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)
