"""The entry's forwarder: signaling and room control reach the node that holds the room.

A pure ASGI middleware in front of the app. For the requests in :data:`ROUTES` it finds the meeting (from
the path, the JSON body or the database), asks the :class:`~roomtape.cluster.placement.Placement` which node
holds its room, and when that is another process it forwards the request there unchanged (same path, same
credentials, same body) and passes the answer back; otherwise the app handles it here.

Why a proxy and not a redirect: client SDKs know one base URL (the Cloudflare and VideoSDK SDKs, browsers
given a join link, ``roomtape.agents``); a redirect would need every client to follow it on a WebSocket
upgrade, which browsers do not. Only signaling passes through the entry, a few messages per second; the media
goes over ICE straight to the media node's own UDP candidates, so the proxy costs no media bandwidth.

Forwarded requests carry :data:`~roomtape.cluster.placement.NODE_AUTH_HEADER` (a secret derived from the
deployment's key): the node receiving one handles it itself and never forwards it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Final, Literal

import httpx
from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from roomtape.cluster.placement import NODE_AUTH_HEADER, NODE_HEADER, NodeInfo, Placement
from roomtape.db.models import Livestream, Meeting, Recording, Session, SessionParticipant
from roomtape.errors import Unavailable

__all__ = ["ROUTES", "NodeForwarder", "Route"]

log = logging.getLogger(__name__)

MeetingSource = Literal["path", "body:meeting_id", "body:roomId", "recording", "peer", "livestream"]

_UUID: Final = r"[0-9a-fA-F-]{36}"
_RTK: Final = r"/accounts/[^/]+/realtime/kit/[^/]+"
_HOP_BY_HOP: Final = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"upgrade", b"host", b"content-length", b"te"}
)
_NODE_DIED: Final = 1012
"""Close code for a client whose room's node went away (RFC 6455 "service restart": reconnect)."""


@dataclass(frozen=True, slots=True)
class Route:
    """A request that needs the meeting's live room."""

    pattern: re.Pattern[str]
    """Matches the path; a ``key`` group holds the meeting, recording or peer id when ``source`` says so."""
    methods: frozenset[str]
    """HTTP methods (``WS`` for the WebSocket)."""
    source: MeetingSource
    """Where the meeting id comes from."""
    place: bool = False
    """Place the room if no node holds it yet (joins); otherwise an unheld room is handled here."""


def _route(path: str, methods: str, source: MeetingSource, place: bool = False) -> Route:
    return Route(re.compile(f"^{path}$"), frozenset(methods.split()), source, place)


ROUTES: Final = (
    _route(r"/v1/meetings/(?P<key>[^/]+)/ws", "WS", "path", place=True),
    _route(r"/v1/meetings/(?P<key>[^/]+)/whip", "POST", "path", place=True),
    _route(r"/v1/meetings/(?P<key>[^/]+)/whip/[^/]+", "DELETE", "path"),
    _route(_RTK + r"/meetings/(?P<key>[^/]+)/active-session/(kick|kick-all|poll)", "POST", "path"),
    _route(_RTK + r"/recordings(/track)?", "POST", "body:meeting_id"),
    _route(_RTK + f"/recordings/(?P<key>{_UUID})", "PUT", "recording"),
    _route(_RTK + r"/meetings/(?P<key>[^/]+)/livestreams", "POST", "path"),
    _route(_RTK + r"/meetings/(?P<key>[^/]+)/active-livestream/stop", "POST", "path"),
    _route(r"/v1/livestreams/(?P<key>[^/]+)/hls/[^/]+/[^/]+", "GET", "livestream"),
    _route(_RTK + r"/sessions/peer-report/(?P<key>[^/]+)", "GET", "peer"),
    _route(r"/v2/recordings/(start|end|stop)", "POST", "body:roomId"),
    _route(r"/v2/recordings/participant/track/(start|stop)", "POST", "body:roomId"),
)
"""Every request that acts on a live room: signaling, recording start/stop/pause/resume, livestream
start/stop and its HLS files (on the node that streams it), kicks, polls and the live peer report."""


def match(scope: Scope) -> tuple[Route, str] | None:
    """The route a request takes and the key its path holds ('' when the key is in the body)."""
    method = "WS" if scope["type"] == "websocket" else str(scope.get("method", ""))
    for route in ROUTES:
        if method in route.methods:
            found = route.pattern.match(str(scope.get("path", "")))
            if found is not None:
                return route, found.groupdict().get("key") or ""
    return None


async def meetings_of(
    sessions: async_sessionmaker[AsyncSession], source: MeetingSource, key: str, body: bytes
) -> list[str]:
    """The meeting ids a request may concern (a VideoSDK ``roomId`` may be a ``customRoomId`` of any app)."""
    if source == "path":
        return [key]
    if source.startswith("body:"):
        try:
            value = json.loads(body or b"{}").get(source.removeprefix("body:"))
        except (ValueError, AttributeError):
            return []  # malformed: the app answers 400 here
        if not isinstance(value, str) or not value:
            return []
        if source == "body:meeting_id":
            return [value]
        async with sessions() as db:
            found = await db.scalars(
                select(Meeting.id).where(or_(Meeting.id == value, Meeting.custom_room_id == value)).limit(10)
            )
            return list(found)
    async with sessions() as db:
        if source == "recording":
            meeting = await db.scalar(select(Recording.meeting_id).where(Recording.id == key))
        elif source == "livestream":
            meeting = await db.scalar(select(Livestream.meeting_id).where(Livestream.id == key))
        else:
            meeting = await db.scalar(
                select(Session.meeting_id)
                .join(SessionParticipant, SessionParticipant.session_id == Session.id)
                .where(SessionParticipant.id == key)
            )
    return [meeting] if meeting else []


class NodeForwarder:
    """Forward room-bound requests to the node holding the room (see the module docstring).

    Args:
        app: The ASGI app behind.
        state: Gives the placement, database sessions and node secret once the lifespan has built them
            (None before: requests pass through).
    """

    def __init__(
        self,
        app: ASGIApp,
        state: Callable[[], tuple[Placement, async_sessionmaker[AsyncSession], str] | None],
    ) -> None:
        self.app = app
        self._state = state
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Forward or pass through."""
        state = self._state() if scope["type"] in ("http", "websocket") else None
        found = match(scope) if state is not None and state[0].distributed else None
        if state is None or found is None or self._forwarded(scope, state[2]):
            await self.app(scope, receive, send)
            return
        placement, sessions, secret = state
        route, key = found
        body, receive = await _buffer(scope, receive)
        try:
            if route.place:
                target = await placement.place(key)
            else:
                target = await self._holder(placement, await meetings_of(sessions, route.source, key, body))
        except Unavailable as exc:
            await _refuse(scope, receive, send, 503, exc.message)
            return
        if target is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await self._websocket(scope, receive, send, placement, target, key, secret)
        else:
            await self._http(scope, receive, send, placement, route, target, key, body, secret)

    @staticmethod
    async def _holder(placement: Placement, meeting_ids: list[str]) -> NodeInfo | None:
        for meeting_id in meeting_ids:
            target = await placement.holder(meeting_id)
            if target is not None:
                return target
        return None

    @staticmethod
    def _forwarded(scope: Scope, secret: str) -> bool:
        for name, value in scope.get("headers", []):
            if name == NODE_AUTH_HEADER.encode():
                return hmac.compare_digest(value.decode("latin-1"), secret)
        return False

    def _headers(self, scope: Scope, placement: Placement, secret: str) -> list[tuple[str, str]]:
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope.get("headers", [])
            if k not in _HOP_BY_HOP and not k.startswith(b"sec-websocket") and not k.startswith(b"x-roomtape-node")
        ]
        client = scope.get("client")
        if client:
            headers.append(("x-forwarded-for", str(client[0])))
        headers += [(NODE_HEADER, placement.node_id), (NODE_AUTH_HEADER, secret)]
        return headers

    async def _http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        placement: Placement,
        route: Route,
        target: NodeInfo,
        key: str,
        body: bytes,
        secret: str,
    ) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=3.0))
        tried: list[str] = []
        while True:
            url = target.url + str(scope["path"])
            query = scope.get("query_string", b"")
            try:
                upstream = await self._client.request(
                    str(scope["method"]),
                    url + ("?" + query.decode("latin-1") if query else ""),
                    headers=self._headers(scope, placement, secret),
                    content=body,
                )
                break
            except httpx.TransportError as exc:
                log.warning("forward to node %s (%s) failed: %r", target.id, target.url, exc)
                tried.append(target.id)
                nxt = await self._replace(placement, route, key, tried)
                if nxt is None:
                    await _refuse(scope, receive, send, 503, f"the node holding the room is unreachable ({exc})")
                    return
                target = nxt
        headers = [
            (k.encode("latin-1"), v.encode("latin-1"))
            for k, v in upstream.headers.multi_items()
            if k.encode("latin-1").lower() not in _HOP_BY_HOP and k.lower() != "content-encoding"
        ]
        headers.append((b"content-length", str(len(upstream.content)).encode()))
        await send({"type": "http.response.start", "status": upstream.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": upstream.content})

    @staticmethod
    async def _replace(placement: Placement, route: Route, key: str, tried: Collection[str]) -> NodeInfo | None:
        """Another node for a join whose node did not answer (it may have just died); None for control."""
        if not route.place or len(tried) > 3:
            return None
        try:
            return await placement.place(key, exclude=tried)
        except Unavailable:
            return None

    async def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        placement: Placement,
        target: NodeInfo,
        key: str,
        secret: str,
    ) -> None:
        connect_message = await receive()
        if connect_message["type"] != "websocket.connect":  # pragma: no cover - the ASGI protocol
            return
        tried: list[str] = []
        upstream: ClientConnection | None = None
        while upstream is None:
            query = scope.get("query_string", b"").decode("latin-1")
            url = target.url.replace("http", "ws", 1) + str(scope["path"]) + (f"?{query}" if query else "")
            try:
                upstream = await connect(
                    url, additional_headers=self._headers(scope, placement, secret), open_timeout=5, max_size=None
                )
            except (OSError, InvalidStatus, WebSocketException, TimeoutError) as exc:
                log.warning("signaling to node %s (%s) failed: %r", target.id, target.url, exc)
                tried.append(target.id)
                try:
                    if len(tried) > 3:
                        raise Unavailable("no media node answered") from exc
                    nxt = await placement.place(key, exclude=tried)
                except Unavailable as failure:
                    await send({"type": "websocket.accept"})
                    await send(
                        {"type": "websocket.send", "text": json.dumps({"type": "error", "message": failure.message})}
                    )
                    await send({"type": "websocket.close", "code": 1013})
                    return
                if nxt is None:  # this process holds rooms and got the room: serve it here
                    await self.app(scope, _replay(connect_message, receive), send)
                    return
                target = nxt
        await send({"type": "websocket.accept"})
        await _bridge(receive, send, upstream)


async def _bridge(receive: Receive, send: Send, upstream: ClientConnection) -> None:
    """Pipe messages both ways until one side closes; the other side gets the same close code."""

    async def client_to_node() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                code = int(message.get("code", 1000))
                # 1005, 1006 and 1015 describe a close without a frame; they may not be sent in one (RFC 6455 7.4.1).
                await upstream.close(code if 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015) else 1000)
                return
            if message.get("text") is not None:
                await upstream.send(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send(message["bytes"])

    async def node_to_client() -> None:
        try:
            async for data in upstream:
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
        except ConnectionClosed:
            pass
        code = upstream.close_code
        # 1006 (no close frame): the node died; tell the client to reconnect.
        await send({"type": "websocket.close", "code": _NODE_DIED if code in (None, 1006) else code})

    tasks = [asyncio.create_task(client_to_node()), asyncio.create_task(node_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        with contextlib.suppress(Exception):
            await upstream.close()


def _replay(first: Message, receive: Receive) -> Receive:
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return again


async def _buffer(scope: Scope, receive: Receive) -> tuple[bytes, Receive]:
    """Read an HTTP request's whole body and make a ``receive`` that hands it to the app again.

    The routed requests carry small JSON or SDP bodies (the body-size limit runs before this).
    """
    if scope["type"] != "http":
        return b"", receive
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = b"".join(chunks)
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return body, replay


async def _refuse(scope: Scope, receive: Receive, send: Send, status: int, message: str) -> None:
    payload = {
        "success": False,
        "error": {"code": status, "message": message},
        "errors": [{"code": status, "message": message}],
    }
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps({"type": "error", "message": message})})
        await send({"type": "websocket.close", "code": 1013})
        return
    body = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
