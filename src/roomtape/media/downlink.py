"""A downlink: the server-offered peer connection that forwards the room's other tracks to one participant.

Unlike :meth:`Room.subscribe <roomtape.media.room.Room.subscribe>` (the client offers, the room answers), a
downlink is negotiated by the server: whenever the set of other participants' tracks changes, it adds a
send-only section per new track (or turns the section of a gone track ``inactive``), makes a new offer and
hands it to the signaling layer, which relays it to the client and brings the answer back through
:meth:`Downlink.accept_answer`. One offer is in flight at a time; changes that arrive meanwhile are folded
into the next offer, so a burst of joins costs one or two round trips, not one per track.

Sections are never reused for another track: aiortc's sender keeps one RTP timestamp origin per section,
and a new publisher's frames restart at 0, which a receiver would see as time going backwards. So the
section list only grows during a session; on a LAN and for the meeting sizes roomtape targets that is
cheaper than the bookkeeping of recycling.

The connection uses BUNDLE ``max-bundle``: every section shares one ICE/DTLS transport, so a renegotiation
adds no ICE gathering and no handshake, and the new track's frames flow as soon as the answer is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from roomtape.media.forward import ForwardTrack
from roomtape.media.room import (
    PREFERRED_CODECS,
    PublishedTrack,
    Room,
    RoomError,
    RoomEvent,
    RoomEventName,
    TrackKind,
    codecs_for_forwarding,
)
from roomtape.media.tap import relay_keyframe_requests

__all__ = ["Downlink", "DownlinkError", "DownlinkOffer", "DownlinkTrack"]

logger = logging.getLogger(__name__)


class DownlinkError(RoomError):
    """The downlink cannot do what was asked now (e.g. an answer arrived while no offer was waiting)."""


@dataclass(frozen=True, slots=True)
class DownlinkTrack:
    """What a section of a downlink offer carries."""

    track_id: str
    """Room-wide track id (as in ``track_published``)."""
    participant_id: str
    """The publisher."""
    kind: TrackKind
    """What the track carries."""


@dataclass(frozen=True, slots=True)
class DownlinkOffer:
    """An offer for the client, with the track each live section carries."""

    sdp: str
    """SDP offer with every ICE candidate."""
    tracks: Mapping[str, DownlinkTrack]
    """Track per media id (``mid``) of the sections that send; inactive sections are not listed."""


OfferCallback = Callable[[DownlinkOffer], Awaitable[None]]


@dataclass(slots=True)
class _Forwarding:
    transceiver: RTCRtpTransceiver
    forward: ForwardTrack
    track: PublishedTrack


_WATCHED: tuple[RoomEventName, ...] = ("track_published", "track_unpublished")


class Downlink:
    """Forwards every track of the other participants of a room to one participant, renegotiating as needed.

    Args:
        room: The room.
        participant_id: A joined participant, the receiver.
        send_offer: Delivers an offer to the client (awaited; the answer comes back through
            :meth:`accept_answer`).
        configuration: aiortc configuration; ICE servers are kept, the bundle policy is forced to
            ``max-bundle``.

    Raises:
        ParticipantNotFoundError: if the participant has not joined.
    """

    def __init__(
        self,
        room: Room,
        participant_id: str,
        send_offer: OfferCallback,
        *,
        configuration: RTCConfiguration | None = None,
    ) -> None:
        self._room = room
        self._participant = room._get(participant_id)
        self._send_offer = send_offer
        ice_servers = configuration.iceServers if configuration is not None else []
        self._pc = RTCPeerConnection(RTCConfiguration(iceServers=ice_servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self._forwarding: dict[str, _Forwarding] = {}
        self._dirty = asyncio.Event()
        self._answer: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.offers = 0
        """Number of offers made so far."""
        # Room.leave closes the participant's connections; registering here keeps that true for this one.
        self._participant.subscribers.append(self._pc)

    @property
    def pc(self) -> RTCPeerConnection:
        """The peer connection (for stats and tests)."""
        return self._pc

    @property
    def participant_id(self) -> str:
        """The receiving participant."""
        return self._participant.id

    def forwarded(self) -> dict[str, DownlinkTrack]:
        """Tracks currently forwarded, by track id."""
        return {
            track_id: DownlinkTrack(f.track.id, f.track.participant_id, f.track.kind)
            for track_id, f in self._forwarding.items()
        }

    def start(self) -> None:
        """Start following the room: an offer is made now if others publish, and after every change."""
        if self._task is not None or self._closed:
            return
        for name in _WATCHED:
            self._room.events.on(name, self._on_room_event)
        self._room.events.on("participant_left", self._on_participant_left)
        self._task = asyncio.get_running_loop().create_task(self._negotiate(), name="roomtape-downlink")
        self._dirty.set()

    def _on_room_event(self, event: RoomEvent) -> None:
        if event.participant_id != self._participant.id:
            self._dirty.set()

    def _on_participant_left(self, event: RoomEvent) -> None:
        if event.participant_id == self._participant.id and not self._closed:
            asyncio.get_running_loop().create_task(self.aclose())

    def _sync(self) -> bool:
        """Add sections for new tracks and deactivate those of gone tracks; tell whether anything changed."""
        wanted = {t.id: t for t in self._room.visible_tracks(self._participant.id)}
        changed = False
        for track_id in [i for i in self._forwarding if i not in wanted]:
            forwarding = self._forwarding.pop(track_id)
            forwarding.forward.stop()
            with contextlib.suppress(ValueError):
                self._participant.forwards.remove(forwarding.forward)
            forwarding.transceiver.direction = "inactive"
            changed = True
        for track_id, track in wanted.items():
            if track_id in self._forwarding:
                continue
            # Subscribing asks the publisher for a keyframe now; it waits in the subscription's queue while
            # the client answers, so the first picture shows as soon as media flows.
            forward = ForwardTrack(track.fanout.subscribe())
            transceiver = self._pc.addTransceiver(forward, direction="sendonly")
            transceiver.setCodecPreferences(
                codecs_for_forwarding(track.media, track.mime_type or PREFERRED_CODECS[track.media])
            )
            relay_keyframe_requests(transceiver.sender, track.fanout.request_keyframe)
            self._forwarding[track_id] = _Forwarding(transceiver, forward, track)
            self._participant.forwards.append(forward)
            changed = True
        return changed

    async def _negotiate(self) -> None:
        try:
            await self._negotiate_forever()
        except asyncio.CancelledError:
            raise
        except Exception:
            # The signaling side is gone (its send failed) or aiortc refused our own offer: nothing more
            # can be negotiated on this connection.
            logger.exception("room %s: downlink of %s stopped", self._room.id, self._participant.id)

    async def _negotiate_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closed or not self._sync():
                continue
            await self._pc.setLocalDescription(await self._pc.createOffer())
            tracks = {
                f.transceiver.mid or "": DownlinkTrack(f.track.id, f.track.participant_id, f.track.kind)
                for f in self._forwarding.values()
            }
            self._answer = loop.create_future()
            self.offers += 1
            await self._send_offer(DownlinkOffer(sdp=self._pc.localDescription.sdp, tracks=tracks))
            await self._answer
            self._answer = None

    async def accept_answer(self, answer_sdp: str) -> None:
        """Apply the client's answer to the pending offer.

        Args:
            answer_sdp: SDP answer.

        Raises:
            DownlinkError: if no offer is waiting for an answer, or the answer cannot be applied (the offer
                stays pending, so a corrected answer may follow).
        """
        waiting = self._answer
        if waiting is None or waiting.done():
            raise DownlinkError("no offer is waiting for an answer")
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=answer_sdp, type="answer"))
        except Exception as exc:
            raise DownlinkError(f"malformed SDP answer: {exc or type(exc).__name__}") from exc
        if not waiting.done():
            waiting.set_result(None)

    async def aclose(self) -> None:
        """Stop following the room, stop forwarding and close the connection. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for name in _WATCHED:
            self._room.events.off(name, self._on_room_event)
        self._room.events.off("participant_left", self._on_participant_left)
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for forwarding in self._forwarding.values():
            forwarding.forward.stop()
        self._forwarding.clear()
        with contextlib.suppress(ValueError):
            self._participant.subscribers.remove(self._pc)
        with contextlib.suppress(Exception):
            await self._pc.close()
