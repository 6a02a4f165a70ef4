"""Errors → HTTP, in one place: ``{success: false, error: {code, message}, errors: [...]}``."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from roomtape.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    RoomtapeError,
    Unauthenticated,
    Unavailable,
)

log = logging.getLogger(__name__)

STATUS: dict[type[RoomtapeError], int] = {
    InvalidInput: 400,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unavailable: 503,
}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """The JSON error body for ``status``."""
    detail = {"code": status, "message": message}
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
    return JSONResponse({"success": False, "error": detail, "errors": [detail]}, status_code=status, headers=headers)


def _status_of(exc: RoomtapeError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            return "malformed JSON body: " + str(err.get("ctx", {}).get("error", msg))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts) or "invalid request"


_UUID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"


@lru_cache(maxsize=4)
def _path_methods(app: FastAPI) -> list[tuple[re.Pattern[str], frozenset[str], int]]:
    """(path regex, methods, number of path parameters) of every documented path, from the OpenAPI document."""
    table = []
    for template, item in app.openapi().get("paths", {}).items():
        escaped = re.escape(template)
        for op in item.values():  # a UUID path parameter matches UUIDs only (``/recordings/track`` is no id)
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if param.get("in") == "path" and param.get("schema", {}).get("format") == "uuid":
                    escaped = escaped.replace(re.escape("{" + param["name"] + "}"), _UUID)
        regex = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", escaped)
        methods = {m.upper() for m in item if m in {"get", "put", "post", "patch", "delete"}}
        if "GET" in methods:
            methods.add("HEAD")
        table.append((re.compile(f"^{regex}$"), frozenset(methods), template.count("{")))
    return table


def _allowed_methods(request: Request) -> list[str]:
    """Every method the documented paths most specific to this one serve.

    Starlette's 405 names only the first route's methods. A literal path wins over a template that also
    matches it: ``/v2/rooms/deactivate`` is not the room ``deactivate`` of ``/v2/rooms/{roomId}``.
    """
    matches = [
        (allowed, params) for pattern, allowed, params in _path_methods(request.app) if pattern.match(request.url.path)
    ]
    fewest = min((params for _, params in matches), default=0)
    return sorted({m for allowed, params in matches if params == fewest for m in allowed})


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into error responses."""

    @app.exception_handler(RoomtapeError)
    async def _roomtape(_: Request, exc: RoomtapeError) -> JSONResponse:
        status = _status_of(exc)
        if status >= 500:
            log.error("request failed: %s", exc.message)
        return error_response(status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(400, _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 405:
            return error_response(405, "method not allowed", {"Allow": ", ".join(_allowed_methods(request))})
        # Keep the framework's headers: a 405 must carry ``Allow`` (RFC 9110 §15.5.6).
        return error_response(exc.status_code, str(exc.detail), dict(exc.headers) if exc.headers else None)

    @app.exception_handler(DBAPIError)
    async def _database(_: Request, exc: DBAPIError) -> JSONResponse:
        # SQLSTATE class 22 is "data exception": e.g. a NUL byte or an unencodable character in a text
        # value, which PostgreSQL refuses and SQLite stores. That is bad input, not a server fault.
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None) or "")
        if sqlstate.startswith("22"):
            return error_response(400, "invalid text in the request (NUL bytes and unencodable characters are refused)")
        log.exception("database error")
        return error_response(503 if exc.connection_invalidated else 500, "database error")

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error")
        return error_response(500, "internal error")
