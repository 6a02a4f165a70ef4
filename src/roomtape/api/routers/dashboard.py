"""The dashboard at ``/dashboard``: browse meetings, sessions and recordings; play recordings back.

Sign-in takes an app's API token (posted in a form body, never in a URL), or a one-time sign-in link
(``roomtape.db.signin_links``; ``roomtape serve`` prints one for the demo app). The server keeps the token in an
encrypted, ``HttpOnly``, ``SameSite=Strict`` cookie scoped to ``/dashboard`` (Fernet with a key derived
from the server's secret, expiring after :data:`SESSION_TTL_SECS`); a signed-out visitor is sent to the
sign-in page.

Everything the pages list and every action they take goes through the public API with that token:

- the pages are rendered from the same REST calls a script makes (sent in-process to this very app);
- the page scripts call ``/dashboard/api/kit/…`` (→ ``/accounts/{account}/realtime/kit/{app}/…``) and
  ``/dashboard/api/v1/…`` (→ ``/v1/…``), a same-origin proxy that adds the session's token and passes the
  API's answer back unchanged. Writes there need the ``X-Roomtape-Dashboard: 1`` header (a cross-site form
  cannot send it).

What the API does not return (the track files of a composite recording and their timing manifests,
participant names and counts beside the lists) is read from storage and through ``roomtape.db.dashboard``;
those reads are scoped to the signed-in app.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import jinja2
from cryptography.fernet import Fernet, InvalidToken
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.api.context import ServerContext, get_context
from roomtape.api.errors import error_response
from roomtape.db.chat import list_session_chat
from roomtape.db.dashboard import (
    live_transcript,
    meeting_activity,
    participant_names,
    recording_participants,
    session_recording_totals,
    session_recordings,
    token_apps,
)
from roomtape.db.lookup import app_session
from roomtape.db.models import Meeting, Recording, SessionSummary, TrackFile
from roomtape.db.recordings import track_files
from roomtape.db.signin_links import SIGNIN_LINK_PATH, SigninLinkRefused, redeem_signin_link
from roomtape.domain.tokens import derive_key, looks_like_jwt
from roomtape.errors import RoomtapeError
from roomtape.jobs.upload import choice_for, local_dir
from roomtape.recording.manifest import MANIFEST_NAME, TrackManifest
from roomtape.recording.service import ACTIVE_STATUSES
from roomtape.transcripts.links import TranscriptLinks
from roomtape.web import dashboard as view

log = logging.getLogger(__name__)

router = APIRouter(prefix="/dashboard", tags=["dashboard"], include_in_schema=False)

COOKIE = "roomtape_dashboard"
"""Name of the session cookie."""
SESSION_TTL_SECS = 12 * 3600
"""A dashboard sign-in lasts this long."""
PER_PAGE = 20
"""Rows per page of the lists."""
FORM_MAX_BYTES = 16_384
"""Largest sign-in or app-switch form body read."""
DELIVERIES_PER_PAGE = 50
"""Rows per page of the webhook delivery log."""
STATUSES = ("INVOKED", "RECORDING", "PAUSED", "UPLOADING", "UPLOADED", "ERRORED")
LAYOUTS = ("grid", "active_speaker", "audio_only")
FORMATS = ("mp4", "webm", "ogg", "mp3", "aac")
_PROXY_PATH = re.compile(r"^(kit|v1/recordings|v1/sessions)/[A-Za-z0-9_\-./]*$")
"""What the page scripts may reach: this app's RealtimeKit API, and transcripts under ``/v1``."""

_templates = jinja2.Environment(
    loader=jinja2.FileSystemLoader(view.TEMPLATES_DIR),
    autoescape=jinja2.select_autoescape(("html",)),
    trim_blocks=True,
    lstrip_blocks=True,
)
_templates.filters.update(size=view.human_size, duration=view.duration, clock=view.clock, when=view.local_time)

_SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; media-src 'self' https: http: blob:; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "same-origin",  # "no-referrer" would make Chromium send "Origin: null" on our own posts
    "X-Content-Type-Options": "nosniff",
}


# --- the signed-in user ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DashboardUser:
    """Who is signed in: the API token, its account, and the app the pages show."""

    token: str
    account_id: str
    app_id: str
    app_name: str
    apps: tuple[tuple[str, str], ...]
    """Every app of the account, (id, name), for the app switcher."""

    def kit(self, rest: str = "") -> str:
        """The RealtimeKit API path of this app, plus ``rest``."""
        return f"/accounts/{self.account_id}/realtime/kit/{self.app_id}{rest}"


def _fernet(ctx: ServerContext) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(ctx.secret_key, "dashboard-session")))


def _seal(ctx: ServerContext, token: str, app_id: str) -> str:
    return _fernet(ctx).encrypt(json.dumps({"t": token, "a": app_id}).encode()).decode()


def _open(ctx: ServerContext, value: str) -> tuple[str, str] | None:
    try:
        data = json.loads(_fernet(ctx).decrypt(value.encode(), ttl=SESSION_TTL_SECS))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("t"), str) or not isinstance(data.get("a"), str):
        return None
    return data["t"], data["a"]


async def _resolve(db: AsyncSession, token: str, app_id: str | None) -> DashboardUser | None:
    """The user of an API token, showing ``app_id`` (or the account's first app); None if not valid."""
    if not token or looks_like_jwt(token):
        return None
    found = await token_apps(db, token)
    if found is None or not found.apps:
        return None
    apps = found.apps
    chosen = next((a for a in apps if a[0] == app_id), None) if app_id else apps[0]
    if chosen is None:
        return None
    return DashboardUser(token, found.account_id, chosen[0], chosen[1], tuple(apps))


async def current_user(request: Request) -> DashboardUser | None:
    """The signed-in user of the request, or None (no cookie, expired, or the token was revoked)."""
    value = request.cookies.get(COOKIE)
    if not value:
        return None
    ctx = get_context(request)
    opened = _open(ctx, value)
    if opened is None:
        return None
    async with ctx.sessions() as db:
        return await _resolve(db, opened[0], opened[1])


def _set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=SESSION_TTL_SECS,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https"
        or get_context(request).settings.resolved_public_url.lower().startswith("https:"),
    )


def _sign_in_redirect(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/dashboard/signin?next={quote(target, safe='')}", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


def _safe_next(value: str | None) -> str:
    """Only a dashboard path: never another site (``//host``) or a scheme."""
    if value and value.startswith("/dashboard") and not value.startswith("//") and "\\" not in value:
        return value
    return "/dashboard/recordings"


def _same_origin(request: Request) -> bool:
    """A form post from one of our own pages (browsers send ``Origin`` on POST)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str]:
    """The fields of a small ``application/x-www-form-urlencoded`` body (last value of a name wins)."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        return {}
    body = await request.body()
    if len(body) > FORM_MAX_BYTES:
        return {}
    return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}


def _page(name: str, request: Request, user: DashboardUser | None, status_code: int = 200, **values: Any) -> Response:
    html = _templates.get_template(name).render(request_path=request.url.path, user=user, **values)
    return HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)


# --- the API, in-process -----------------------------------------------------------------------------------


class _SignedOut(Exception):
    """The API refused the session's token (revoked since sign-in)."""


@dataclass
class ApiAnswer:
    """An API response: status and JSON body."""

    status: int
    body: Any

    @property
    def error(self) -> str | None:
        """The API's error message, if the call failed."""
        if self.status < 400:
            return None
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return str(self.body["error"].get("message") or f"HTTP {self.status}")
        return f"HTTP {self.status}"


async def _send(
    request: Request,
    user: DashboardUser,
    method: str,
    path: str,
    *,
    params: list[tuple[str, str]] | None = None,
    content: bytes | None = None,
    content_type: str | None = None,
) -> httpx.Response:
    """Call this app's own API with the user's token, in-process (the same routes a script reaches)."""
    headers = {"Authorization": f"Bearer {user.token}"}
    if content_type:
        headers["Content-Type"] = content_type
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://roomtape.internal", timeout=None) as client:
        return await client.request(method, path, params=tuple(params or ()), content=content, headers=headers)


async def _api(
    request: Request,
    user: DashboardUser,
    method: str,
    path: str,
    params: list[tuple[str, str]] | None = None,
    json_body: Any = None,
) -> ApiAnswer:
    content = json.dumps(json_body).encode() if json_body is not None else None
    response = await _send(
        request,
        user,
        method,
        path,
        params=params,
        content=content,
        content_type="application/json" if content is not None else None,
    )
    if response.status_code == 401:
        raise _SignedOut
    try:
        body = response.json()
    except ValueError:
        body = None
    return ApiAnswer(response.status_code, body)


def _filters(values: dict[str, str]) -> list[tuple[str, str]]:
    return [(k, v.strip()) for k, v in values.items() if v and v.strip()]


def _pages(paging: dict[str, Any] | None, page_no: int, per_page: int) -> dict[str, Any]:
    total = int((paging or {}).get("total_count") or 0)
    last = max(1, -(-total // per_page))
    return {"page_no": page_no, "last": last, "total": total}


def _query_without_page(request: Request) -> str:
    return "&".join(f"{quote(k)}={quote(v)}" for k, v in request.query_params.multi_items() if k != "page")


# --- sign-in -----------------------------------------------------------------------------------------------


@router.get("")
async def dashboard_home() -> RedirectResponse:
    """The dashboard's start page is the recordings list."""
    return RedirectResponse("/dashboard/recordings", status_code=303)


@router.get("/signin")
async def signin_page(request: Request, next: str | None = Query(None, max_length=2048)) -> Response:
    """The sign-in form."""
    return _page("signin.html", request, None, next=_safe_next(next), error=None)


@router.post("/signin")
async def signin(request: Request) -> Response:
    """Check the API token (and app), then set the session cookie and go on."""
    if not _same_origin(request):
        return error_response(403, "cross-site sign-in refused")
    form = await _form(request)
    api_token, app_id, next_path = form.get("api_token", ""), form.get("app_id", ""), form.get("next", "")
    ctx = get_context(request)
    async with ctx.sessions() as db:
        user = await _resolve(db, api_token.strip()[:512], app_id.strip()[:64] or None)
    if user is None:
        message = "That API token (or app id) is not valid here."
        return _page("signin.html", request, None, status_code=401, next=_safe_next(next_path), error=message)
    response = RedirectResponse(_safe_next(next_path), status_code=303)
    _set_cookie(response, request, _seal(ctx, user.token, user.app_id))
    return response


@router.get(SIGNIN_LINK_PATH.removeprefix("/dashboard"))
async def signin_link_page(request: Request) -> Response:
    """Where a one-time sign-in link lands: the page's script posts the secret from the URL fragment.

    The secret travels in the fragment, which browsers never send, so no access log, proxy or ``Referer``
    sees it; the post that redeems it carries it in the body.
    """
    return _page("signin_link.html", request, None)


@router.post(SIGNIN_LINK_PATH.removeprefix("/dashboard"))
async def signin_by_link(request: Request) -> Response:
    """Redeem a sign-in link: a session for its app, or a page saying why the link does not work (4xx)."""
    if not _same_origin(request):
        return error_response(403, "cross-site sign-in refused")
    secret = (await _form(request)).get("secret", "").strip()
    ctx = get_context(request)
    try:
        async with ctx.sessions() as db:
            api_token, app_id = await redeem_signin_link(db, ctx.box, secret)
            user = await _resolve(db, api_token, app_id)
    except SigninLinkRefused as exc:
        status = 400 if exc.reason == "unknown" else 410
        return _page("signin_link_refused.html", request, None, status_code=status, message=exc.message)
    if user is None:  # the demo app's token was revoked (or the app deleted) after the link was made
        message = "The app this sign-in link was made for no longer accepts its token."
        return _page("signin_link_refused.html", request, None, status_code=410, message=message)
    response = RedirectResponse("/dashboard/meetings", status_code=303)
    _set_cookie(response, request, _seal(ctx, user.token, user.app_id))
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    """Forget the session."""
    if not _same_origin(request):
        return error_response(403, "cross-site request refused")
    response = RedirectResponse("/dashboard/signin", status_code=303)
    response.delete_cookie(COOKIE, path="/dashboard")
    return response


@router.post("/app")
async def switch_app(request: Request) -> Response:
    """Show another app of the same account."""
    app_id = (await _form(request)).get("app_id", "")
    user = await current_user(request)
    if user is None or not _same_origin(request):
        return _sign_in_redirect(request)
    if app_id not in {a[0] for a in user.apps}:
        return error_response(404, "app not found")
    response = RedirectResponse("/dashboard/recordings", status_code=303)
    _set_cookie(response, request, _seal(get_context(request), user.token, app_id))
    return response


# --- lists -------------------------------------------------------------------------------------------------


async def _fetch_list(
    request: Request, path: str, filters: dict[str, str], page: int
) -> tuple[DashboardUser, ApiAnswer] | Response:
    """One page of an API list for a list page, or the redirect to sign in."""
    user = await current_user(request)
    if user is None:
        return _sign_in_redirect(request)
    params = [*_filters(filters), ("page_no", str(page)), ("per_page", str(PER_PAGE))]
    try:
        return user, await _api(request, user, "GET", user.kit(path), params)
    except _SignedOut:
        return _sign_in_redirect(request)


def _list_page(
    name: str,
    request: Request,
    user: DashboardUser,
    answer: ApiAnswer,
    rows: list[dict[str, Any]],
    page: int,
    filters: dict[str, str],
    status_code: int = 200,
    **values: Any,
) -> Response:
    """Render a list page: its rows, the API's error if any, the filters and the pager."""
    return _page(
        name,
        request,
        user,
        status_code=status_code,
        rows=rows,
        error=answer.error,
        filters=filters,
        pages=_pages(answer.body.get("paging") if answer.error is None else None, page, PER_PAGE),
        query=_query_without_page(request),
        **values,
    )


@router.get("/recordings")
async def recordings_page(
    request: Request,
    status: str = Query("", max_length=32),
    meeting: str = Query("", max_length=64),
    search: str = Query("", max_length=255),
    start: str = Query("", max_length=64),
    end: str = Query("", max_length=64),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    """Recordings with status, participants, duration, size and time; filters and pages."""
    fetched = await _fetch_list(
        request,
        "/recordings",
        {"status": status, "meeting_id": meeting, "search": search, "start_time": start, "end_time": end},
        page,
    )
    if isinstance(fetched, Response):
        return fetched
    user, answer = fetched
    rows: list[dict[str, Any]] = answer.body.get("data", []) if answer.error is None else []
    ids = [r["id"] for r in rows]
    people: dict[str, list[str]] = {i: [] for i in ids}
    async with get_context(request).sessions() as db:
        if ids:
            pairs = await recording_participants(db, ids)
            names = await participant_names(db, {p for _, p in pairs})
            for rid, pid in pairs:
                people[rid].append(names.get(pid, pid))
    for row in rows:
        row["participants"] = sorted(people.get(row["id"], []))
        meeting_of = row.get("meeting") or {}
        row["meeting_title"] = meeting_of.get("title") or meeting_of.get("id") or ""
    return _list_page(
        "recordings.html",
        request,
        user,
        answer,
        rows,
        page,
        {"status": status, "meeting": meeting, "search": search, "start": start, "end": end},
        statuses=STATUSES,
        final=view.FINAL_STATUSES,
    )


@router.get("/meetings")
async def meetings_page(
    request: Request,
    status: str = Query("", max_length=16),
    search: str = Query("", max_length=255),
    start: str = Query("", max_length=64),
    end: str = Query("", max_length=64),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    """Meetings with status, participants, live session, recordings and their size; filters and pages."""
    return await _meetings_list(request, {"status": status, "search": search, "start": start, "end": end}, page)


@router.post("/meetings")
async def create_meeting(request: Request) -> Response:
    """Create a meeting from the "New meeting" form, then open its page; an empty title creates nothing."""
    user = await current_user(request)
    if user is None:
        return _sign_in_redirect(request)
    if not _same_origin(request):
        return error_response(403, "cross-site request refused")
    title = (await _form(request)).get("title", "").strip()
    problem = view.meeting_title_problem(title)
    if problem is None:
        try:
            answer = await _api(request, user, "POST", user.kit("/meetings"), json_body={"title": title})
        except _SignedOut:
            return _sign_in_redirect(request)
        if answer.error is None:
            meeting_id = quote(str(answer.body["data"]["id"]), safe="")
            return RedirectResponse(f"/dashboard/meetings/{meeting_id}", status_code=303)
        problem = answer.error
    blank = {"status": "", "search": "", "start": "", "end": ""}
    return await _meetings_list(request, blank, 1, status_code=400, create_error=problem, new_title=title)


async def _meetings_list(
    request: Request, filters: dict[str, str], page: int, status_code: int = 200, **values: Any
) -> Response:
    """The meetings list page (``values``: what the "New meeting" form shows again after bad input)."""
    fetched = await _fetch_list(
        request,
        "/meetings",
        {
            "status": filters["status"],
            "search": filters["search"],
            "start_time": filters["start"],
            "end_time": filters["end"],
        },
        page,
    )
    if isinstance(fetched, Response):
        return fetched
    user, answer = fetched
    rows: list[dict[str, Any]] = answer.body.get("data", []) if answer.error is None else []
    ids = [r["id"] for r in rows]
    async with get_context(request).sessions() as db:
        activity = await meeting_activity(db, ids, now=datetime.now(UTC), active_statuses=ACTIVE_STATUSES)
    for row in rows:
        row["participants"] = activity.participants.get(row["id"], 0)
        row["live_session"] = activity.live_session.get(row["id"])
        row["duration"] = activity.duration.get(row["id"])
        row["recordings"], row["size"] = activity.recordings.get(row["id"], (0, None))
        row["active_recording"] = activity.active_recording.get(row["id"])
    return _list_page("meetings.html", request, user, answer, rows, page, filters, status_code=status_code, **values)


@router.get("/meetings/{meeting_id}")
async def meeting_page(request: Request, meeting_id: str) -> Response:
    """One meeting: join links, who is in it now, its live stream (played here), recording, its recordings.

    Pause, resume and stop are on the recording's page, which also plays it back.
    """
    user = await current_user(request)
    if user is None:
        return _sign_in_redirect(request)
    mid = quote(meeting_id, safe="")
    try:
        answer = await _api(request, user, "GET", user.kit(f"/meetings/{mid}"))
        if answer.error is not None:
            status = answer.status if answer.status in (400, 404) else 502
            return _page("error.html", request, user, status_code=status, message=answer.error)
        people = await _api(request, user, "GET", user.kit(f"/meetings/{mid}/participants"), [("per_page", "100")])
        recs = await _api(
            request, user, "GET", user.kit("/recordings"), [("meeting_id", meeting_id), ("per_page", str(PER_PAGE))]
        )
        live = await _api(request, user, "GET", user.kit(f"/meetings/{mid}/active-session"))
        stream = await _api(request, user, "GET", user.kit(f"/meetings/{mid}/active-livestream"))
    except _SignedOut:
        return _sign_in_redirect(request)
    recordings: list[dict[str, Any]] = recs.body.get("data", []) if recs.error is None else []
    active = next((r for r in recordings if r.get("kind") == "composite" and r.get("status") in ACTIVE_STATUSES), None)
    meeting: dict[str, Any] = answer.body["data"]
    return _page(
        "meeting.html",
        request,
        user,
        meeting=meeting,
        participants=people.body.get("data", []) if people.error is None else [],
        recordings=recordings,
        active=active,
        live=live.body.get("data") if live.error is None else None,
        livestream=stream.body.get("data") if stream.error is None else None,
        join_base=f"{get_context(request).settings.resolved_public_url}/join/{mid}",
        error=people.error or recs.error,
        final=view.FINAL_STATUSES,
    )


@router.get("/sessions")
async def sessions_page(
    request: Request,
    status: str = Query("", max_length=16),
    meeting: str = Query("", max_length=64),
    search: str = Query("", max_length=255),
    start: str = Query("", max_length=64),
    end: str = Query("", max_length=64),
    page: int = Query(1, ge=1, le=100_000),
) -> Response:
    """Sessions with status, participants, duration, recordings and time; filters and pages."""
    fetched = await _fetch_list(
        request,
        "/sessions",
        {"status": status, "associated_id": meeting, "search": search, "start_time": start, "end_time": end},
        page,
    )
    if isinstance(fetched, Response):
        return fetched
    user, answer = fetched
    rows: list[dict[str, Any]] = (answer.body.get("data") or {}).get("sessions", []) if answer.error is None else []
    ids = [r["id"] for r in rows]
    async with get_context(request).sessions() as db:
        recs = await session_recording_totals(db, ids)
    now = datetime.now(UTC)
    for row in rows:
        started = datetime.fromisoformat(row["started_at"].replace("Z", "+00:00"))
        ended = datetime.fromisoformat(row["ended_at"].replace("Z", "+00:00")) if row.get("ended_at") else now
        row["duration"] = (ended - started).total_seconds()
        row["recordings"], row["size"] = recs.get(row["id"], (0, None))
    return _list_page(
        "sessions.html",
        request,
        user,
        answer,
        rows,
        page,
        {"status": status, "meeting": meeting, "search": search, "start": start, "end": end},
    )


# --- one session -------------------------------------------------------------------------------------------


@router.get("/sessions/{session_id}")
async def session_page(request: Request, session_id: str) -> Response:
    """One session: who was there, its recordings, its chat (when kept) and its summary."""
    user = await current_user(request)
    if user is None:
        return _sign_in_redirect(request)
    try:
        answer = await _api(request, user, "GET", user.kit(f"/sessions/{quote(session_id, safe='')}"))
    except _SignedOut:
        return _sign_in_redirect(request)
    if answer.error is not None:
        status = answer.status if answer.status in (400, 404) else 502
        return _page("error.html", request, user, status_code=status, message=answer.error)
    data: dict[str, Any] = answer.body["data"]
    async with get_context(request).sessions() as db:
        meeting = await db.get(Meeting, data["associated_id"])
        recordings = await session_recordings(db, data["id"])
        chat = await list_session_chat(db, data["id"])
        summary = await db.get(SessionSummary, data["id"])
        db.expunge_all()
    return _page(
        "session.html",
        request,
        user,
        session=data,
        meeting=meeting,
        recordings=recordings,
        chat=chat,
        summary=summary,
    )


@router.get("/sessions/{session_id}/transcript.json")
async def session_transcript_json(request: Request, session_id: str) -> Response:
    """The session's transcript so far, for the session page's live view (polled while the session is LIVE).

    Compact items (``id``, ``speaker`` name, ``start``/``end`` on the session clock, ``text``) in speaking
    order, the live transcription's progress (``transcription``, None if not transcribed live) and the
    session's ``status``, which tells the page when to stop polling. Only the signed-in app's sessions.
    """
    user = await current_user(request)
    if user is None:
        return error_response(401, "not signed in to the dashboard")
    async with get_context(request).sessions() as db:
        session = await app_session(db, user.app_id, session_id)
        if session is None:
            return error_response(404, "session not found")
        body = await live_transcript(db, session)
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


# --- one recording -----------------------------------------------------------------------------------------


@dataclass
class Download:
    """One download button."""

    label: str
    url: str
    file_name: str
    size: float | None = None
    group: str = "recording"


async def _manifests(ctx: ServerContext, rec: Recording, dirs: list[str]) -> list[TrackManifest]:
    """The timing manifests of the recording's tracks: from storage once uploaded, else from the local dir."""
    found: list[TrackManifest] = []
    base = local_dir(ctx.settings, rec.id)
    choice = choice_for(ctx, rec)
    try:
        for directory in dirs:
            rel = str(PurePosixPath(directory) / MANIFEST_NAME)
            raw: bytes | None = None
            if (base / rel).is_file():
                raw = (base / rel).read_bytes()
            elif await choice.backend.exists(choice.key(rel)):
                raw = b"".join([chunk async for chunk in choice.backend.open(choice.key(rel))])
            if raw is None:
                continue
            try:
                found.append(TrackManifest.model_validate_json(raw))
            except ValueError:
                log.warning("recording %s: unreadable manifest %s", rec.id, rel)
    finally:
        await choice.backend.close()
    return found


async def _downloads(
    ctx: ServerContext, rec: Recording, data: dict[str, Any], tracks: list[TrackFile], names: dict[str, str]
) -> list[Download]:
    """Download buttons: composite, audio file, every uploaded track file and manifest, transcript formats."""
    out: list[Download] = []
    if data.get("status") != "UPLOADED":
        data = {}  # while a new render uploads, the URLs still name the previous file
    if data.get("download_url"):
        out.append(Download("Composite", data["download_url"], data["output_file_name"], data.get("file_size")))
    if data.get("audio_download_url"):
        name = str(rec.config.get("audio_file_name") or "audio")
        out.append(Download("Audio file", data["audio_download_url"], name))
    ttl = ctx.settings.download_url_ttl_secs
    uploaded = [t for t in tracks if t.status == "uploaded"]
    if uploaded:
        choice = choice_for(ctx, rec)
        try:
            for t in uploaded:
                signed = await choice.backend.signed_url(choice.key(t.path), ttl)
                label = f"Track {t.kind} #{t.index} ({names.get(t.participant_id) or t.participant_id[:8]})"
                out.append(Download(label, signed.url, PurePosixPath(t.path).name, t.size, "tracks"))
            for directory in sorted({str(PurePosixPath(t.path).parent) for t in uploaded}):
                key = choice.key(str(PurePosixPath(directory) / MANIFEST_NAME))
                if await choice.backend.exists(key):
                    signed = await choice.backend.signed_url(key, ttl)
                    participant, kind = PurePosixPath(directory).parts[-2:]
                    label = f"Timing manifest {kind} ({names.get(participant) or participant[:8]})"
                    name = f"{participant}_{kind}_{MANIFEST_NAME}"
                    out.append(Download(label, signed.url, name, None, "manifests"))
        except RoomtapeError as exc:
            log.warning("recording %s: no track download URLs: %s", rec.id, exc.message)
        finally:
            await choice.backend.close()
    if rec.session_id:
        links = TranscriptLinks(ctx.secret_key, ctx.settings.resolved_public_url)
        for fmt, label in (("json", "JSON"), ("vtt", "WebVTT"), ("srt", "SRT")):
            url, _ = links.sign("recordings", rec.id, fmt, ttl)
            out.append(Download(f"Transcript ({label})", url, f"transcript_{rec.id}.{fmt}", None, "transcript"))
    return out


@router.get("/recordings/{recording_id}")
async def recording_page(request: Request, recording_id: str) -> Response:
    """One recording: player, autoscrolling transcript, timeline, downloads and actions."""
    user = await current_user(request)
    if user is None:
        return _sign_in_redirect(request)
    try:
        answer = await _api(request, user, "GET", user.kit(f"/recordings/{quote(recording_id, safe='')}"))
    except _SignedOut:
        return _sign_in_redirect(request)
    if answer.error is not None:
        status = answer.status if answer.status in (400, 404) else 502
        return _page("error.html", request, user, status_code=status, message=answer.error)
    data: dict[str, Any] = answer.body["data"]
    ctx = get_context(request)
    async with ctx.sessions() as db:
        rec = await db.get(Recording, data["id"])
        if rec is None or rec.app_id != user.app_id:
            return _page("error.html", request, user, status_code=404, message="recording not found")
        meeting = await db.get(Meeting, rec.meeting_id)
        tracks = await track_files(db, rec.id)
        names = await participant_names(db, {t.participant_id for t in tracks})
        db.expunge_all()
    dirs = sorted({str(PurePosixPath(t.path).parent) for t in tracks})
    origin = (rec.started_time or rec.invoked_time).timestamp()
    manifests = await _manifests(ctx, rec, dirs)
    rows = view.timeline(manifests, origin, names)
    downloads = await _downloads(ctx, rec, data, tracks, names)
    output_name = str(data.get("output_file_name") or "")
    extension = output_name.rsplit(".", 1)[-1].lower() if "." in output_name else ""
    composite = rec.config.get("composite") or {}
    span = None
    if rec.started_time:  # a running recording: so far
        span = ((rec.stopped_time or datetime.now(UTC)) - rec.started_time).total_seconds()
    page_data = {
        "recording_id": rec.id,
        "status": rec.status,
        "final": sorted(view.FINAL_STATUSES),
        "duration": composite.get("duration_seconds") or span,
        "timeline": view.timeline_json(rows),
        "names": names,
    }
    return _page(
        "recording.html",
        request,
        user,
        rec=data,
        meeting=meeting,
        error_reason=rec.error,
        # The API's answer decides (the row read after it may be newer): URLs and status always agree.
        player_url=data.get("download_url") if data.get("status") == "UPLOADED" else None,
        player_tag="audio" if extension in view.AUDIO_EXTENSIONS else "video",
        downloads=downloads,
        timeline=rows,
        participants=sorted(names.values()),
        page_json=json.dumps(page_data).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"),
        timeline_duration=page_data["duration"],
        layouts=LAYOUTS,
        formats=FORMATS,
        current_layout=(rec.config.get("compose") or {}).get("layout", ""),
        current_format=extension,
        has_transcript=bool(rec.session_id),
        active=ACTIVE_STATUSES,
    )


# --- webhooks ----------------------------------------------------------------------------------------------


@router.get("/webhooks")
async def webhooks_page(request: Request, page: int = Query(1, ge=1, le=100_000)) -> Response:
    """Registered webhooks and the delivery log: every event and URL, with each attempt's response."""
    user = await current_user(request)
    if user is None:
        return _sign_in_redirect(request)
    try:
        answer = await _api(request, user, "GET", user.kit("/webhooks"))
        log_answer = await _api(
            request,
            user,
            "GET",
            user.kit("/webhooks/deliveries"),
            [("page_no", str(page)), ("per_page", str(DELIVERIES_PER_PAGE))],
        )
    except _SignedOut:
        return _sign_in_redirect(request)
    hooks: list[dict[str, Any]] = answer.body.get("data", []) if answer.error is None else []
    names = {h.get("id"): h.get("name") for h in hooks}
    deliveries: list[dict[str, Any]] = log_answer.body.get("data", []) if log_answer.error is None else []
    for d in deliveries:
        d["webhook"] = names.get(d.get("webhook_id"))
    return _page(
        "webhooks.html",
        request,
        user,
        hooks=hooks,
        error=answer.error or log_answer.error,
        deliveries=deliveries,
        pages=_pages(log_answer.body.get("paging") if log_answer.error is None else None, page, DELIVERIES_PER_PAGE),
        query="",
    )


# --- the API proxy for the page scripts --------------------------------------------------------------------


@router.api_route("/api/{target:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def api_proxy(target: str, request: Request) -> Response:
    """Forward a page script's call to the public API with the session's token (see the module docstring)."""
    user = await current_user(request)
    if user is None:
        return error_response(401, "not signed in to the dashboard")
    if request.method != "GET" and (request.headers.get("x-roomtape-dashboard") != "1" or not _same_origin(request)):
        return error_response(403, "dashboard API writes need the X-Roomtape-Dashboard header")
    if not _PROXY_PATH.match(target) or ".." in target.split("/"):
        return error_response(404, "no such API path")
    scope, _, rest = target.partition("/")
    path = user.kit(f"/{rest}" if rest else "") if scope == "kit" else f"/v1/{rest}"
    response = await _send(
        request,
        user,
        request.method,
        path,
        params=list(request.query_params.multi_items()),
        content=await request.body() if request.method != "GET" else None,
        content_type=request.headers.get("content-type"),
    )
    headers = {"Cache-Control": "no-store"}
    return Response(
        response.content,
        status_code=response.status_code,
        media_type=response.headers.get("content-type"),
        headers=headers,
    )


@router.get("/{rest:path}")
async def not_found_page(request: Request, rest: str) -> Response:
    """Any other dashboard path: sign in first, then a 404 page."""
    user = await current_user(request)
    if user is None:
        return _sign_in_redirect(request)
    return _page("error.html", request, user, status_code=404, message=f"no page at /dashboard/{rest}")
