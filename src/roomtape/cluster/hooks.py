"""The media plane tells the placement which rooms this process holds, and reports its load."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from roomtape.cluster.placement import NodeLoad, Placement
from roomtape.media.plane import LiveRoom, MediaPlane

__all__ = ["RoomHooks"]

log = logging.getLogger(__name__)


class RoomHooks:
    """Claims each room the plane opens and releases it at close; :meth:`load` is the heartbeat's report.

    Args:
        placement: The process's placement.
        media: The process's media plane.
    """

    def __init__(self, placement: Placement, media: MediaPlane) -> None:
        self._placement = placement
        self._media = media
        self._tasks: set[asyncio.Task[Any]] = set()
        media.on_room_opened(lambda live: self._spawn(placement.room_opened(live.meeting_id), live))
        media.on_room_closing(lambda live: self._spawn(placement.room_closed(live.meeting_id), live))

    def load(self) -> NodeLoad:
        """Rooms and published tracks in this process now."""
        rooms = self._media.rooms()
        tracks = sum(len(p.tracks) for live in rooms for p in live.room.participants.values())
        return NodeLoad(rooms=len(rooms), tracks=tracks)

    def _spawn(self, coro: Any, live: LiveRoom) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:  # the registry being away must not break the room
                log.exception("meeting %s: placement update failed", live.meeting_id)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        """Wait for pending updates (the last rooms' releases)."""
        for task in list(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 2.0)
