"""An in-process roomtape server (uvicorn on a free port, same event loop as the test) with a live room.

The media plane and the HTTP API share the process, so a test publishes with real aiortc peers straight into
``MediaPlane.open(...).room.publish(...)`` and drives recordings over real HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aioice.ice
import uvicorn
from aiortc import RTCPeerConnection
from fastapi import FastAPI
from sqlalchemy import select
from tests.conftest import free_port
from tests.integration.media.roomtape_media_peers import (
    CounterVideoTrack,
    ToneAudioTrack,
    accept_answer,
    no_ice_servers,
    publisher_offer,
)

from roomtape.api.app import create_app
from roomtape.api.context import ServerContext
from roomtape.config import Settings
from roomtape.db import lifecycle
from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import Meeting, OutboxEvent, Participant, Recording, TrackFile
from roomtape.media.plane import LiveRoom
from roomtape.media.room import PublishedTrack


def loopback_only() -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]  # type: ignore[assignment]


@dataclass
class LiveServer:
    base_url: str
    app: FastAPI
    data_dir: Path
    account_id: str
    app_id: str
    api_token: str
    api_secret: str

    @property
    def ctx(self) -> ServerContext:
        ctx: ServerContext = self.app.state.ctx
        return ctx

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": self.api_token, "Content-Type": "application/json"}

    async def rows(self, model: Any, *where: Any, order: Any = None) -> list[Any]:
        async with self.ctx.sessions() as db:
            query = select(model).where(*where)
            if order is not None:
                query = query.order_by(order)
            return list((await db.scalars(query)).all())

    async def recording(self, recording_id: str) -> Recording:
        async with self.ctx.sessions() as db:
            row = await db.get(Recording, recording_id)
            assert row is not None
            return row

    async def files(self, recording_id: str) -> list[TrackFile]:
        return await self.rows(TrackFile, TrackFile.recording_id == recording_id, order=TrackFile.index)

    async def events(self, *names: str) -> list[OutboxEvent]:
        rows = await self.rows(OutboxEvent, order=OutboxEvent.created_at)
        return [r for r in rows if not names or r.event in names]


@contextlib.asynccontextmanager
async def live_server(data_dir: Path, **settings_overrides: Any) -> AsyncIterator[LiveServer]:
    port = free_port()
    settings_overrides.setdefault("database_url", f"sqlite+aiosqlite:///{data_dir / 'roomtape.db'}")
    settings = Settings(
        data_dir=data_dir,
        secret_key="test-secret-key",
        ice_host_addresses="127.0.0.1",
        public_url=f"http://127.0.0.1:{port}",
        **settings_overrides,
    )
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    task = asyncio.ensure_future(server.serve())
    deadline = time.monotonic() + 30
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            task.result()
            raise RuntimeError("server did not start")
        await asyncio.sleep(0.02)
    loopback_only()
    ctx: ServerContext = app.state.ctx
    async with ctx.sessions() as db:
        creds = await create_app_with_account(db, "tests", box=ctx.box)
        await db.commit()
    assert creds.api_secret is not None
    try:
        yield LiveServer(
            base_url=f"http://127.0.0.1:{port}",
            app=app,
            data_dir=data_dir,
            account_id=creds.account_id,
            app_id=creds.app_id,
            api_token=creds.api_token,
            api_secret=creds.api_secret,
        )
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


@dataclass
class Publisher:
    pc: RTCPeerConnection
    video: CounterVideoTrack
    tracks: dict[str, PublishedTrack] = field(default_factory=dict)

    async def close(self) -> None:
        await self.pc.close()


@dataclass
class MeetingRoom:
    meeting: Meeting
    participants: dict[str, Participant]
    live: LiveRoom
    session_id: str

    def pid(self, name: str) -> str:
        return self.participants[name].id


async def open_meeting(srv: LiveServer, *names: str, **meeting_fields: Any) -> MeetingRoom:
    """A meeting with participants (custom ids = names), a live session, and a room where they joined.

    ``meeting_fields`` are set on the meeting row (e.g. ``live_stream_on_start``, ``recording_config``).
    """
    async with srv.ctx.sessions() as db:
        meeting = Meeting(app_id=srv.app_id, title="recorded", status="ACTIVE", **meeting_fields)
        db.add(meeting)
        await db.flush()
        participants = {}
        for name in names:
            p = Participant(meeting_id=meeting.id, custom_participant_id=name, preset_name="group_call_host", name=name)
            db.add(p)
            participants[name] = p
        await db.flush()
        session = None
        for p in participants.values():
            session, _ = await lifecycle.participant_joined(db, meeting, p)
        await db.commit()
    assert session is not None
    live = srv.ctx.media.open(meeting.id, session.id, srv.app_id)
    for p in participants.values():
        live.room.join(p.id, name=p.name)
    return MeetingRoom(meeting=meeting, participants=participants, live=live, session_id=session.id)


async def publish(room: MeetingRoom, name: str, frequency: float = 440.0) -> Publisher:
    """Publish 30 fps counter video and a tone from a real aiortc peer into the room."""
    pid = room.pid(name)
    published: dict[str, PublishedTrack] = {}

    def on_published(event: Any) -> None:
        if event.participant_id == pid and event.track is not None:
            published[event.track.kind] = event.track

    room.live.room.events.on("track_published", on_published)
    pc = RTCPeerConnection(no_ice_servers())
    video = CounterVideoTrack()
    offer = await publisher_offer(pc, video, ToneAudioTrack(frequency))
    answer = await room.live.room.publish(pid, offer)
    await accept_answer(pc, answer)
    room.live.room.events.off("track_published", on_published)
    return Publisher(pc=pc, video=video, tracks=published)


async def wait_for(predicate: Callable[[], Any], within: float, what: str = "condition") -> None:
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)
