"""The browser side: the client library and the join page (``/join/{meeting_id}?token=…``)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(__file__).resolve().parents[2] / "web"
STATIC_DIR = WEB_DIR / "static"

router = APIRouter(tags=["web"], include_in_schema=False)


@router.get("/join/{meeting_id}")
async def join_page(meeting_id: str) -> FileResponse:
    """The join page; the page reads the meeting id from its path and the join token from ``?token=``."""
    return FileResponse(
        WEB_DIR / "templates" / "join.html", media_type="text/html", headers={"Cache-Control": "no-store"}
    )


def static_files() -> StaticFiles:
    """The client library, page scripts and styles, served at ``/static``."""
    return StaticFiles(directory=STATIC_DIR)
