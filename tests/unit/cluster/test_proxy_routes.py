"""Which requests the forwarder sends to the node holding the room, and with which key."""

from __future__ import annotations

import pytest

from roomtape.cluster.proxy import match

RTK = "/accounts/acc/realtime/kit/app"
REC = "6f1c2d3e-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    ("kind", "method", "path", "source", "key", "place"),
    [
        ("websocket", "", "/v1/meetings/m1/ws", "path", "m1", True),
        ("http", "POST", "/v1/meetings/m1/whip", "path", "m1", True),
        ("http", "DELETE", "/v1/meetings/m1/whip/abc", "path", "m1", False),
        ("http", "POST", f"{RTK}/meetings/m1/active-session/kick", "path", "m1", False),
        ("http", "POST", f"{RTK}/meetings/m1/active-session/kick-all", "path", "m1", False),
        ("http", "POST", f"{RTK}/meetings/m1/active-session/poll", "path", "m1", False),
        ("http", "POST", f"{RTK}/recordings", "body:meeting_id", "", False),
        ("http", "POST", f"{RTK}/recordings/track", "body:meeting_id", "", False),
        ("http", "PUT", f"{RTK}/recordings/{REC}", "recording", REC, False),
        ("http", "GET", f"{RTK}/sessions/peer-report/peer1", "peer", "peer1", False),
        ("http", "POST", f"{RTK}/meetings/m1/livestreams", "path", "m1", False),
        ("http", "POST", f"{RTK}/meetings/m1/active-livestream/stop", "path", "m1", False),
        ("http", "GET", "/v1/livestreams/ls1/hls/123.sig/index.m3u8", "livestream", "ls1", False),
        ("http", "GET", "/v1/livestreams/ls1/hls/123.sig/seg00004.ts", "livestream", "ls1", False),
        ("http", "POST", "/v2/recordings/start", "body:roomId", "", False),
        ("http", "POST", "/v2/recordings/end", "body:roomId", "", False),
        ("http", "POST", "/v2/recordings/participant/track/stop", "body:roomId", "", False),
    ],
)
def test_room_bound_requests_are_routed(kind: str, method: str, path: str, source: str, key: str, place: bool) -> None:
    found = match({"type": kind, "method": method, "path": path})
    assert found is not None
    route, got = found
    assert (route.source, got, route.place) == (source, key, place)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"{RTK}/recordings/{REC}"),  # reading a recording needs no room
        ("GET", f"{RTK}/recordings"),
        ("POST", f"{RTK}/meetings"),
        ("GET", "/v1/meetings/m1/whip"),
        ("POST", f"{RTK}/recordings/{REC}/retry"),
        ("GET", "/healthz"),
        ("PUT", f"{RTK}/recordings/not-a-uuid"),
        ("GET", f"{RTK}/meetings/m1/active-livestream"),  # reading a livestream needs no room
        ("GET", f"{RTK}/livestreams"),
        ("GET", f"{RTK}/livestreams/ls1"),
    ],
)
def test_other_requests_are_handled_where_they_arrive(method: str, path: str) -> None:
    assert match({"type": "http", "method": method, "path": path}) is None
