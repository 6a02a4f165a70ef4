"""The media plane of one process: the live :class:`Room` of each meeting, and who wants to know.

The signaling layer opens a room when the first participant of a meeting joins (a session starts) and
closes it when the session ends; the recorder subscribes with :meth:`MediaPlane.on_room_opened` to attach
its taps to every track of every room. Nothing here imports the web framework or the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from roomtape.media.room import Room

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveRoom:
    """A meeting's room while its session is live."""

    meeting_id: str
    """The meeting the room belongs to."""
    session_id: str
    """The session (database row) this occurrence of the meeting is."""
    app_id: str
    """The app that owns the meeting."""
    room: Room
    """Participants, tracks, forwarding."""


RoomCallback = Callable[[LiveRoom], object]


class MediaPlane:
    """Registry of live rooms by meeting id, with open/close callbacks."""

    def __init__(self) -> None:
        self._rooms: dict[str, LiveRoom] = {}
        self._opened: list[RoomCallback] = []
        self._closing: list[RoomCallback] = []

    def get(self, meeting_id: str) -> LiveRoom | None:
        """The meeting's live room, if its session is live in this process."""
        return self._rooms.get(meeting_id)

    def rooms(self) -> list[LiveRoom]:
        """Every live room."""
        return list(self._rooms.values())

    def on_room_opened(self, callback: RoomCallback) -> None:
        """Call ``callback(live_room)`` for every room opened from now on (and every room already open)."""
        self._opened.append(callback)
        for live in list(self._rooms.values()):
            self._call(callback, live)

    def on_room_closing(self, callback: RoomCallback) -> None:
        """Call ``callback(live_room)`` just before a room is closed."""
        self._closing.append(callback)

    def open(self, meeting_id: str, session_id: str, app_id: str) -> LiveRoom:
        """Open (or return) the meeting's room for ``session_id`` and tell the listeners."""
        live = self._rooms.get(meeting_id)
        if live is not None:
            return live
        live = LiveRoom(meeting_id=meeting_id, session_id=session_id, app_id=app_id, room=Room(meeting_id))
        self._rooms[meeting_id] = live
        for callback in list(self._opened):
            self._call(callback, live)
        return live

    async def close(self, meeting_id: str) -> None:
        """Tell the listeners, then close the meeting's room and every peer connection in it."""
        live = self._rooms.pop(meeting_id, None)
        if live is None:
            return
        for callback in list(self._closing):
            self._call(callback, live)
        await live.room.close()

    async def close_all(self) -> None:
        """Close every room (server shutdown)."""
        for meeting_id in list(self._rooms):
            await self.close(meeting_id)

    @staticmethod
    def _call(callback: RoomCallback, live: LiveRoom) -> None:
        # A failing listener must not stop the room or the other listeners.
        try:
            callback(live)
        except Exception:
            log.exception("room listener failed for meeting %s", live.meeting_id)
