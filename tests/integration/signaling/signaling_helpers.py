"""A real roomtape server for signaling tests, its API, and readers of what Python clients receive."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, VideoFrame
from sqlalchemy import select
from tests.conftest import Server, start_server, stop_server
from tests.integration.media.roomtape_media_peers import read_counter

from roomtape.db.engine import create_engine, session_factory
from roomtape.db.models import OutboxEvent

KEEP_ALIVE_SCALE = 0.01
"""The server ends a session 60 s x 0.01 = 0.6 s after the last leave (60 s is the meeting default)."""

SERVER_ENV = {
    "ROOMTAPE_ICE_HOST_ADDRESSES": "127.0.0.1",
    "ROOMTAPE_SESSION_KEEP_ALIVE_SCALE": str(KEEP_ALIVE_SCALE),
}


def run_signaling_server(tmp: Path) -> Iterator[Server]:
    server = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}", SERVER_ENV)
    try:
        yield server
    finally:
        stop_server(server)


@dataclass
class Api:
    """The RealtimeKit API of one app, for setting meetings up and reading sessions."""

    server: Server

    @property
    def base(self) -> str:
        return f"{self.server.base_url}/accounts/{self.server.account_id}/realtime/kit/{self.server.app_id}"

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            self.base + path,
            headers={"Authorization": f"Bearer {self.server.api_token}"},
            timeout=10,
            **kwargs,
        )
        assert response.status_code < 300, response.text
        return response.json()["data"]

    def meeting(self, **fields: Any) -> str:
        return str(self._call("POST", "/meetings", json={"title": "signaling test", **fields})["id"])

    def participant(self, meeting_id: str, name: str) -> tuple[str, str]:
        data = self._call(
            "POST",
            f"/meetings/{meeting_id}/participants",
            json={"name": name, "preset_name": "group_call_host", "custom_participant_id": f"{name}-{time.time_ns()}"},
        )
        return str(data["id"]), str(data["token"])

    def patch_meeting(self, meeting_id: str, **fields: Any) -> None:
        self._call("PATCH", f"/meetings/{meeting_id}", json=fields)

    def sessions(self, meeting_id: str) -> list[dict[str, Any]]:
        sessions = self._call("GET", "/sessions", params={"associated_id": meeting_id})["sessions"]
        return [s for s in sessions if s["associated_id"] == meeting_id]

    def session_participants(self, session_id: str) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/sessions/{session_id}/participants")["participants"])

    def kick(self, meeting_id: str, participant_ids: list[str]) -> Any:
        return self._call(
            "POST", f"/meetings/{meeting_id}/active-session/kick", json={"participant_ids": participant_ids}
        )

    def whip_url(self, meeting_id: str) -> str:
        return f"{self.server.base_url}/v1/meetings/{meeting_id}/whip"


async def outbox(server: Server, meeting_id: str) -> list[tuple[str, dict[str, Any]]]:
    """``(event, payload)`` of the meeting's outbox rows, oldest first."""
    engine = create_engine(server.database_url)
    try:
        async with session_factory(engine)() as db:
            rows = await db.scalars(select(OutboxEvent).order_by(OutboxEvent.created_at))
            return [(r.event, r.payload) for r in rows if r.payload.get("meeting", {}).get("id") == meeting_id]
    finally:
        await engine.dispose()


@dataclass
class Received:
    """What a client decoded from one remote track."""

    counters: list[int] = field(default_factory=list)
    audio: list[np.ndarray] = field(default_factory=list)
    first_frame_at: float | None = None
    ended: bool = False


def read_track(track: MediaStreamTrack, into: Received) -> asyncio.Task[None]:
    """Decode ``track`` in the background into ``into``."""

    async def run() -> None:
        try:
            while True:
                frame = await track.recv()
                if into.first_frame_at is None:
                    into.first_frame_at = time.monotonic()
                if isinstance(frame, VideoFrame):
                    into.counters.append(read_counter(frame))
                elif isinstance(frame, AudioFrame):
                    # aiortc decodes Opus to interleaved stereo s16: keep the left channel.
                    into.audio.append(frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)])
        except MediaStreamError:
            into.ended = True

    return asyncio.ensure_future(run())


async def wait_for(predicate: Callable[[], bool], within: float, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)
