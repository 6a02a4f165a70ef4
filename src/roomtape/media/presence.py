"""Presence: who is in which meeting's room, kept in step with the session rows.

The signaling layer calls :meth:`Presence.join` when a participant connects (a WebSocket or a WHIP
resource) and :meth:`Presence.leave` when it goes. Presence records the join and the leave in the database
(:mod:`roomtape.db.lifecycle` opens the session, emits ``meeting.started``, ``meeting.participantJoined`` and
``meeting.participantLeft`` to the outbox), opens the meeting's room on the :class:`MediaPlane`, and, when the
room is empty, ends the session once the meeting's keep-alive has passed (``meeting.ended``) and closes the
room. A join within the keep-alive cancels the end, so the session and its room carry on.

Each participant has at most one live :class:`Membership`: connecting again (a reload, a second tab)
disconnects the previous connection first, as the room has one publisher per participant.

Kicks (the active-session API) arrive through :meth:`Presence.kick`, registered as a kick hook: the
connection is told (``"kicked"``) and closed, and the participant leaves the room.

No web framework here: a connection hands presence a callback to disconnect it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape.db import lifecycle
from roomtape.db.models import Meeting, Participant
from roomtape.db.presets import policy_for
from roomtape.domain.presets import UNRESTRICTED, PresetPolicy
from roomtape.errors import Forbidden, NotFound
from roomtape.media.plane import LiveRoom, MediaPlane
from roomtape.media.room import Room

if TYPE_CHECKING:
    from roomtape.transcripts.links import TranscriptLinks

__all__ = ["DisconnectReason", "Membership", "Presence"]

logger = logging.getLogger(__name__)

DisconnectReason = Literal["kicked", "replaced", "shutdown"]
"""Why presence disconnects a connection: kicked by the API, replaced by a newer connection of the same
participant, or the server is stopping."""

DisconnectCallback = Callable[[DisconnectReason], Awaitable[None]]


@dataclass(eq=False)
class Membership:
    """One connection of a participant to a meeting's live room."""

    id: str
    """Unique id of this connection (the WHIP resource id, for WHIP)."""
    app_id: str
    """The app of the meeting."""
    meeting_id: str
    """The meeting."""
    participant_id: str
    """The participant (database id), also its id in the room."""
    name: str | None
    """Display name."""
    session_id: str
    """The session this join belongs to."""
    stay_id: str
    """The session-participant row of this join (the RealtimeKit ``peerId``)."""
    live: LiveRoom
    """The meeting's live room."""
    policy: PresetPolicy = UNRESTRICTED
    """What the participant's preset allows, read when it joined (a preset change applies at the next join)."""
    on_disconnect: DisconnectCallback | None = None
    """Set by the connection: tells the client why and closes the connection."""
    left: bool = field(default=False)
    """True once the participant has left through this membership."""

    @property
    def room(self) -> Room:
        """The room."""
        return self.live.room


class Presence:
    """Joins and leaves of every meeting served by this process.

    Args:
        sessions: Database session factory.
        plane: The process's media plane.
        keep_alive_scale: Factor applied to each meeting's ``session_keep_alive_time_in_secs`` (tests use a
            small one).
        transcript_links: Signs the transcript URL of the ``meeting.transcript`` sent when a session ends.
        on_session_ended: Called with the session id after a session ended (committed): the jobs runner's
            ``submit_summary``, which writes the summary if the meeting asked for one.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        plane: MediaPlane,
        *,
        keep_alive_scale: float = 1.0,
        transcript_links: TranscriptLinks | None = None,
        on_session_ended: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._sessions = sessions
        self._plane = plane
        self._scale = keep_alive_scale
        self._transcript_links = transcript_links
        self._on_session_ended = on_session_ended
        self._locks: dict[str, asyncio.Lock] = {}
        self._members: dict[str, Membership] = {}
        self._by_participant: dict[tuple[str, str], Membership] = {}
        self._end_timers: dict[str, asyncio.Task[None]] = {}

    @property
    def plane(self) -> MediaPlane:
        """The media plane."""
        return self._plane

    def get(self, membership_id: str) -> Membership | None:
        """The live membership with this id, if any."""
        return self._members.get(membership_id)

    def members(self, meeting_id: str) -> list[Membership]:
        """Live memberships of a meeting."""
        return [m for m in self._members.values() if m.meeting_id == meeting_id]

    def _lock(self, meeting_id: str) -> asyncio.Lock:
        # Joins, leaves and the end of a session of one meeting run one at a time: two first joins must not
        # open two sessions, and an end must not close a room someone just joined.
        return self._locks.setdefault(meeting_id, asyncio.Lock())

    async def join(self, meeting_id: str, participant_id: str) -> Membership:
        """Put a participant in the meeting's room, starting a session if none is live.

        Args:
            meeting_id: The meeting.
            participant_id: A participant of that meeting.

        Returns:
            The new membership; set its ``on_disconnect`` so kicks can reach the connection.

        Raises:
            NotFound: if the meeting or the participant does not exist.
            Forbidden: if the participant's preset does not exist in the meeting's app.
            Conflict: if the meeting is INACTIVE.
        """
        async with self._lock(meeting_id):
            previous = self._by_participant.get((meeting_id, participant_id))
            if previous is not None:
                await self._disconnect(previous, "replaced")
            async with self._sessions() as db:
                meeting = await db.get(Meeting, meeting_id)
                participant = await db.get(Participant, participant_id)
                if meeting is None:
                    raise NotFound("meeting not found")
                if participant is None or participant.meeting_id != meeting.id:
                    raise NotFound("participant not found")
                policy = await policy_for(db, meeting.app_id, participant.preset_name)
                if policy is None:
                    raise Forbidden(f"participant's preset {participant.preset_name!r} does not exist in this app")
                session, stay = await lifecycle.participant_joined(db, meeting, participant)
                await db.commit()
                app_id, name, session_id, stay_id = meeting.app_id, participant.name, session.id, stay.id
            timer = self._end_timers.pop(meeting_id, None)
            if timer is not None:
                timer.cancel()
            live = self._plane.get(meeting_id)
            if live is not None and live.session_id != session_id:
                # A room left over from an ended session (its close was interrupted): start afresh.
                await self._plane.close(meeting_id)
            live = self._plane.open(meeting_id, session_id, app_id)
            live.room.join(participant_id, name=name, policy=policy)
            membership = Membership(
                id=uuid.uuid4().hex,
                app_id=app_id,
                meeting_id=meeting_id,
                participant_id=participant_id,
                name=name,
                session_id=session_id,
                stay_id=stay_id,
                live=live,
                policy=policy,
            )
            self._members[membership.id] = membership
            self._by_participant[(meeting_id, participant_id)] = membership
            logger.info("meeting %s: %s joined session %s", meeting_id, participant_id, session_id)
            return membership

    async def leave(self, membership: Membership) -> None:
        """Take the participant out of the room and record the leave. Idempotent.

        When the room is left empty, the session ends after the meeting's keep-alive unless someone joins.

        Args:
            membership: What :meth:`join` returned.
        """
        if membership.left:
            return
        async with self._lock(membership.meeting_id):
            await self._leave(membership)

    async def _leave(self, membership: Membership) -> None:
        """Leave with the meeting's lock held."""
        if membership.left:
            return
        membership.left = True
        self._members.pop(membership.id, None)
        key = (membership.meeting_id, membership.participant_id)
        if self._by_participant.get(key) is membership:
            del self._by_participant[key]
        keep_alive = 60.0
        try:  # the peer report's media counters, read before the room forgets the tracks
            media_stats: list[dict[str, Any]] | None = await membership.room.track_stats(membership.participant_id)
        except Exception:  # a report is not worth a failed leave
            logger.exception("meeting %s: no media stats for %s", membership.meeting_id, membership.participant_id)
            media_stats = None
        async with self._sessions() as db:
            # Already recorded when the API kicked the participant; participant_left is idempotent.
            await lifecycle.participant_left(db, membership.stay_id, media_stats=media_stats)
            meeting = await db.get(Meeting, membership.meeting_id)
            if meeting is not None:
                keep_alive = float(meeting.session_keep_alive_time_in_secs)
            await db.commit()
        await membership.room.leave(membership.participant_id)
        logger.info("meeting %s: %s left", membership.meeting_id, membership.participant_id)
        if not membership.room.participants and membership.meeting_id not in self._end_timers:
            delay = keep_alive * self._scale
            self._end_timers[membership.meeting_id] = asyncio.get_running_loop().create_task(
                self._end_later(membership.meeting_id, membership.session_id, delay),
                name=f"roomtape-session-end-{membership.session_id}",
            )

    async def _end_later(self, meeting_id: str, session_id: str, delay: float) -> None:
        await asyncio.sleep(delay)
        async with self._lock(meeting_id):
            if self._end_timers.get(meeting_id) is asyncio.current_task():
                del self._end_timers[meeting_id]
            await self._end(meeting_id, session_id)

    async def _end(self, meeting_id: str, session_id: str) -> None:
        """End the session and close its room if nobody is in it; the meeting's lock is held."""
        live = self._plane.get(meeting_id)
        if live is not None and live.session_id == session_id and live.room.participants:
            return
        async with self._sessions() as db:
            ended = await lifecycle.end_session_if_idle(db, session_id, transcript_links=self._transcript_links)
            await db.commit()
        if ended:
            logger.info("meeting %s: session %s ended", meeting_id, session_id)
            if self._on_session_ended is not None:
                try:
                    await self._on_session_ended(session_id)
                except Exception:  # a summary request must not keep the room open
                    logger.exception("session %s: the end hook failed", session_id)
        if live is not None and live.session_id == session_id:
            await self._plane.close(meeting_id)

    async def _disconnect(self, membership: Membership, reason: DisconnectReason) -> None:
        """Tell the connection and close it, then leave; the meeting's lock is held."""
        callback = membership.on_disconnect
        if callback is not None:
            try:
                await callback(reason)
            except Exception:
                # The client may be gone already; leaving must still happen.
                logger.exception("disconnecting %s (%s) failed", membership.participant_id, reason)
        await self._leave(membership)

    async def kick(self, app_id: str, meeting_id: str, participant_ids: Sequence[str]) -> None:
        """Disconnect kicked participants (a kick hook of the active-session API).

        Args:
            app_id: The meeting's app.
            meeting_id: The meeting.
            participant_ids: Participants the API has already marked as left.
        """
        wanted = set(participant_ids)
        async with self._lock(meeting_id):
            for membership in self.members(meeting_id):
                if membership.app_id == app_id and membership.participant_id in wanted:
                    await self._disconnect(membership, "kicked")

    async def aclose(self) -> None:
        """Server shutdown: disconnect everyone, end sessions now and close the rooms."""
        for membership in list(self._members.values()):
            async with self._lock(membership.meeting_id):
                await self._disconnect(membership, "shutdown")
        timers, self._end_timers = self._end_timers, {}
        for timer in timers.values():
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
        # Peer connections do not survive a restart, so nobody can come back within the keep-alive.
        for live in self._plane.rooms():
            async with self._lock(live.meeting_id):
                await self._end(live.meeting_id, live.session_id)
