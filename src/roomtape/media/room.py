"""A room: participants, the tracks they publish, and who receives which, over aiortc peer connections.

Each participant publishes over one peer connection (the WHIP shape: the client offers, the room
answers) and receives over one peer connection per :meth:`Room.subscribe` call (the WHEP shape: the client
offers receive-only sections, the room answers with forwarded tracks). ICE is not trickled: aiortc's
``setLocalDescription`` returns once gathering is complete, so the answer carries every candidate.

Published tracks are tapped (:mod:`roomtape.media.tap`) and fanned out (:mod:`roomtape.media.forward`);
nothing is decoded. Answers prefer VP8 and Opus; a subscriber is offered exactly the publisher's codec,
since frames are forwarded as they are.

No HTTP here: the signaling layer maps its requests onto these methods and room events onto messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCRtpTransceiver,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from roomtape.domain.presets import UNRESTRICTED, PresetPolicy
from roomtape.media.chat import ChatLog, ChatMessage
from roomtape.media.events import EventEmitter
from roomtape.media.forward import ForwardTrack, TrackFanout
from roomtape.media.polls import Poll
from roomtape.media.sdp import MediaSection, parse_media_sections
from roomtape.media.tap import TappedReceiver, relay_keyframe_requests, tap_receiver

__all__ = [
    "FORWARDABLE_CODECS",
    "PREFERRED_CODECS",
    "InvalidOfferError",
    "NotAllowedError",
    "Participant",
    "ParticipantNotFoundError",
    "PublishedTrack",
    "Room",
    "RoomError",
    "RoomEvent",
    "RoomEventName",
    "SubscribeResult",
    "TrackKind",
    "UnsupportedCodecError",
    "check_publish_allowed",
    "check_publish_offer",
    "codecs_for_forwarding",
]

logger = logging.getLogger(__name__)

TrackKind = Literal["audio", "video", "screen_audio", "screen_video"]
"""What a published track carries; screen shares are recorded as their own files."""

MediaKind = Literal["audio", "video"]

RoomEventName = Literal[
    "participant_joined",
    "participant_left",
    "track_published",
    "track_unpublished",
    "track_muted",
    "track_unmuted",
    "chat_message",
    "track_over_limit",
    "poll_created",
    "poll_updated",
]
"""Names of the events a :class:`Room` emits. ``track_over_limit``: a video keyframe larger than the
publisher's preset allows arrived; the track's frames are dropped (not forwarded, not recorded) until a
keyframe that fits (``RoomEvent.size`` and ``RoomEvent.limit`` say how large)."""

PREFERRED_CODECS: Mapping[MediaKind, str] = {"audio": "audio/opus", "video": "video/VP8"}
"""Codec put first in answers to publishers, per media kind (others stay acceptable after it)."""


FORWARDABLE_CODECS: frozenset[str] = frozenset({"audio/opus", "video/vp8", "video/h264"})
"""Lower-case MIME types roomtape accepts from publishers: aiortc can packetize them for subscribers and the
recorder can write them (Opus and VP8 to WebM, H.264 to MKV). PCMU/PCMA would forward but not record."""


class RoomError(Exception):
    """Base class of the room's errors: the request does not fit the room's current state."""


class ParticipantNotFoundError(RoomError, LookupError):
    """No participant with this id is in the room."""


class NotAllowedError(RoomError):
    """The participant's preset does not allow this (publishing a kind, subscribing)."""


class InvalidOfferError(RoomError, ValueError):
    """The session description is malformed or has nothing to publish."""


class UnsupportedCodecError(RoomError):
    """A media section offers no codec roomtape can forward (e.g. only H.265 or only G.722)."""


def check_publish_offer(offer_sdp: str) -> list[MediaSection]:
    """Check that a publishing offer is a session description whose every sending section can be forwarded.

    This runs before aiortc sees the offer: aiortc accepts some malformed text silently, and would answer a
    section with no common codec by rejecting the whole description with a terse message.

    Args:
        offer_sdp: SDP offer text.

    Returns:
        The offer's audio and video sections that send media, in order.

    Raises:
        InvalidOfferError: if the text is not a session description or sends no audio or video.
        UnsupportedCodecError: if a sending section offers no codec in :data:`FORWARDABLE_CODECS`.
    """
    lines = [line.strip() for line in offer_sdp.strip().splitlines()]
    if not lines or lines[0] != "v=0" or not any(line.startswith("o=") for line in lines):
        raise InvalidOfferError("malformed SDP: a session description starts with v=0 and has an o= line")
    sections = parse_media_sections(offer_sdp)
    sending = [s for s in sections if s.kind in ("audio", "video") and s.direction in ("sendrecv", "sendonly")]
    if not sending:
        raise InvalidOfferError("malformed SDP: no audio or video section sends media")
    for section in sending:
        if section.mid is None:
            raise InvalidOfferError(f"malformed SDP: the {section.kind} section has no a=mid")
        media_codecs = [c for c in section.codecs if c.lower().split("/")[1] not in ("rtx", "red", "ulpfec")]
        if not any(c.lower() in FORWARDABLE_CODECS for c in media_codecs):
            offered = ", ".join(media_codecs) or "none"
            allowed = ", ".join(sorted(c for c in FORWARDABLE_CODECS if c.startswith(section.kind)))
            raise UnsupportedCodecError(
                f"no codec roomtape can forward: {section.kind} section {section.mid} offers {offered}; "
                f"roomtape forwards {allowed}"
            )
    return sending


def check_publish_allowed(
    policy: PresetPolicy, sending: Sequence[MediaSection], track_kinds: Mapping[str, TrackKind] | None = None
) -> None:
    """Check that a preset allows every kind of track an offer sends.

    Args:
        policy: The publisher's preset policy.
        sending: The offer's sending sections (:func:`check_publish_offer`).
        track_kinds: Kind per media id for screen tracks.

    Raises:
        NotAllowedError: naming each refused section and the preset.
    """
    kinds = track_kinds or {}
    refused = [
        f"{kinds.get(s.mid or '', s.kind)} (section {s.mid})"
        for s in sending
        if not policy.may_publish(kinds.get(s.mid or "", s.kind))
    ]
    if refused:
        raise NotAllowedError(
            f"preset {policy.preset_name!r} does not allow publishing {', '.join(refused)}; nothing was published"
        )


@dataclass(eq=False)
class PublishedTrack:
    """A track a participant publishes, as the room forwards and records it."""

    id: str
    """Room-wide track id."""
    participant_id: str
    """The publisher."""
    kind: TrackKind
    """What it carries."""
    media: MediaKind
    """RTP media kind."""
    mid: str | None
    """Media id of its section in the publisher's session description."""
    tap: TappedReceiver
    """Keyframe requests, sender reports, counters."""
    fanout: TrackFanout
    """Subscribe here to receive its encoded frames (subscribers, the recorder)."""
    mime_type: str = ""
    """Negotiated codec, e.g. ``"video/VP8"``; empty until the answer is made."""
    muted: bool = False
    """Last mute state the client announced."""
    hidden: bool = False
    """Published by a hidden participant: not forwarded to, nor announced to, the others."""


@dataclass(eq=False)
class Participant:
    """Someone (a browser, a Python client, an agent) in the room."""

    id: str
    """Participant id, chosen by the caller."""
    name: str | None = None
    """Display name."""
    publisher: RTCPeerConnection | None = None
    """The peer connection its tracks arrive on."""
    subscribers: list[RTCPeerConnection] = field(default_factory=list)
    """Peer connections forwarding others' tracks to it."""
    tracks: dict[str, PublishedTrack] = field(default_factory=dict)
    """Its published tracks by id."""
    forwards: list[ForwardTrack] = field(default_factory=list)
    """Tracks forwarded to it."""
    policy: PresetPolicy = UNRESTRICTED
    """What its preset allows (``roomtape.domain.presets``)."""

    @property
    def hidden(self) -> bool:
        """Whether the others must not see this participant."""
        return self.policy.hidden


@dataclass(frozen=True, slots=True)
class RoomEvent:
    """Payload of every room event."""

    name: RoomEventName
    """Event name."""
    participant_id: str
    """The participant the event is about."""
    track: PublishedTrack | None = None
    """The track, for track events."""
    chat: ChatMessage | None = None
    """The message, for ``chat_message`` (``participant_id`` is its sender)."""
    hidden: bool = False
    """The participant is hidden: do not tell the others."""
    size: tuple[int, int] | None = None
    """``track_over_limit``: the picture size that arrived."""
    limit: tuple[int, int] | None = None
    """``track_over_limit``: the largest size the preset allows."""
    poll: Poll | None = None
    """``poll_created`` / ``poll_updated``: the poll."""


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """The room's answer to a subscriber's offer."""

    answer: str
    """SDP answer, with all ICE candidates."""
    tracks: Mapping[str, str]
    """Forwarded track id by media id (``mid``) of the subscriber's sections."""


def _capabilities(media: MediaKind, first: str) -> list[RTCRtpCodecCapability]:
    """Forwardable codecs aiortc can receive for ``media``, those of MIME type ``first`` in front, RTX kept."""
    codecs = [
        c
        for c in RTCRtpSender.getCapabilities(media).codecs
        if c.mimeType.lower() in FORWARDABLE_CODECS or c.mimeType.lower() == "video/rtx"
    ]
    return sorted(codecs, key=lambda c: c.mimeType.lower() != first.lower())


def codecs_for_forwarding(media: MediaKind, mime_type: str) -> list[RTCRtpCodecCapability]:
    """The codec ``mime_type`` (and RTX for video), nothing else: a subscriber gets the publisher's codec.

    Args:
        media: ``"audio"`` or ``"video"``.
        mime_type: The publisher's negotiated codec, e.g. ``"video/VP8"``.

    Returns:
        Codec preferences for the forwarding transceiver.
    """
    codecs = RTCRtpSender.getCapabilities(media).codecs
    return [c for c in codecs if c.mimeType.lower() in (mime_type.lower(), "video/rtx")]


class Room:
    """Participants and their tracks; forwards every published track to its subscribers.

    Args:
        room_id: Identifier, for logs and events.
        configuration: aiortc peer connection configuration. The default has no ICE servers (host
            candidates only, which is enough on loopback and a LAN); aiortc's own default would ask a public
            STUN server.
    """

    def __init__(self, room_id: str, *, configuration: RTCConfiguration | None = None) -> None:
        self.id = room_id
        self.events: EventEmitter[RoomEventName, RoomEvent] = EventEmitter()
        """Subscribe to room events here."""
        self._configuration = configuration or RTCConfiguration(iceServers=[])
        self._participants: dict[str, Participant] = {}
        self.chat = ChatLog()
        """The newest chat messages of the room, for later joiners."""
        self.polls: dict[str, Poll] = {}
        """Polls of the session in progress, by id, oldest first."""

    @property
    def participants(self) -> Mapping[str, Participant]:
        """Participants by id."""
        return self._participants

    def tracks(self) -> list[PublishedTrack]:
        """Every published track in the room."""
        return [t for p in self._participants.values() for t in p.tracks.values()]

    def _get(self, participant_id: str) -> Participant:
        try:
            return self._participants[participant_id]
        except KeyError:
            raise ParticipantNotFoundError(participant_id) from None

    def _emit(
        self,
        name: RoomEventName,
        participant_id: str,
        track: PublishedTrack | None = None,
        *,
        hidden: bool | None = None,
        size: tuple[int, int] | None = None,
        limit: tuple[int, int] | None = None,
        poll: Poll | None = None,
    ) -> None:
        if hidden is None:
            participant = self._participants.get(participant_id)
            hidden = participant.hidden if participant is not None else False
        self.events.emit(name, RoomEvent(name, participant_id, track, hidden=hidden, size=size, limit=limit, poll=poll))

    def post_chat(self, message: ChatMessage) -> None:
        """Keep a checked chat message and emit ``chat_message`` to everyone listening.

        Args:
            message: From :func:`roomtape.media.chat.new_chat_message`; its sender must be in the room.

        Raises:
            ParticipantNotFoundError: if the sender is not in the room.
        """
        # Not hidden even for a hidden participant: someone who writes in the chat chose to be seen.
        self._get(message.participant_id)
        self.chat.add(message)
        self.events.emit("chat_message", RoomEvent("chat_message", message.participant_id, chat=message))

    def create_poll(self, poll: Poll) -> None:
        """Add a poll; emits ``poll_created`` (``participant_id`` is its creator)."""
        self.polls[poll.id] = poll
        self._emit("poll_created", poll.created_by or "", hidden=False, poll=poll)

    def vote(self, participant_id: str, poll_id: str, option: int) -> Poll:
        """Count a participant's vote; emits ``poll_updated``.

        Raises:
            ParticipantNotFoundError: if the participant has not joined.
            NotAllowedError: if its preset may not vote.
            RoomError: no such poll.
            PollError: no such option, or it has voted already.
        """
        participant = self._get(participant_id)
        if not participant.policy.vote:
            raise NotAllowedError(f"preset {participant.policy.preset_name!r} does not allow voting in polls")
        poll = self.polls.get(poll_id)
        if poll is None:
            raise RoomError(f"no poll {poll_id} in this session")
        poll.vote(participant_id, participant.name, option)
        self._emit("poll_updated", participant_id, hidden=False, poll=poll)
        return poll

    def _over_limit(self, track: PublishedTrack, limit: tuple[int, int], size: tuple[int, int]) -> None:
        logger.info("room %s: track %s is %sx%s, over its preset's %sx%s", self.id, track.id, *size, *limit)
        self._emit("track_over_limit", track.participant_id, track, size=size, limit=limit)

    def visible_participants(self, viewer_id: str) -> list[Participant]:
        """The participants ``viewer_id`` may see: everyone else who is not hidden."""
        return [p for p in self._participants.values() if p.id != viewer_id and not p.hidden]

    def visible_tracks(self, viewer_id: str) -> list[PublishedTrack]:
        """The tracks forwarded to ``viewer_id``: the others' tracks, hidden participants' left out."""
        return [t for t in self.tracks() if t.participant_id != viewer_id and not t.hidden]

    def join(self, participant_id: str, *, name: str | None = None, policy: PresetPolicy = UNRESTRICTED) -> Participant:
        """Add a participant; emits ``participant_joined``. Joining twice returns the same participant.

        Args:
            participant_id: Participant id.
            name: Display name.
            policy: What its preset allows; enforced by :meth:`publish`, :meth:`subscribe` and forwarding.

        Returns:
            The participant.
        """
        existing = self._participants.get(participant_id)
        if existing is not None:
            existing.policy = policy
            return existing
        participant = Participant(participant_id, name, policy=policy)
        self._participants[participant_id] = participant
        self._emit("participant_joined", participant_id)
        return participant

    async def publish(
        self,
        participant_id: str,
        offer_sdp: str,
        *,
        track_kinds: Mapping[str, TrackKind] | None = None,
    ) -> str:
        """Accept a participant's publishing offer; emits ``track_published`` per track.

        Args:
            participant_id: A joined participant without a publishing connection.
            offer_sdp: SDP offer with send-only (or send-receive) audio/video sections.
            track_kinds: Kind per media id for tracks that are not plain ``audio``/``video``, e.g.
                ``{"2": "screen_video"}``.

        Returns:
            The SDP answer, with every ICE candidate.

        Raises:
            ParticipantNotFoundError: if the participant has not joined.
            RoomError: if the participant already publishes.
            InvalidOfferError: if the offer is malformed.
            UnsupportedCodecError: if a section offers no forwardable codec.
            NotAllowedError: if the participant's preset does not allow publishing a kind the offer sends.
        """
        participant = self._get(participant_id)
        if participant.publisher is not None:
            raise RoomError(f"participant {participant_id} already publishes")
        sending = check_publish_offer(offer_sdp)
        kinds = dict(track_kinds or {})
        policy = participant.policy
        check_publish_allowed(policy, sending, kinds)
        pc = RTCPeerConnection(self._configuration)
        participant.publisher = pc
        pending: list[PublishedTrack] = []

        # Codec preferences only count if set before setRemoteDescription, so make the transceivers the
        # offer's sections will bind to now, in order.
        for section in parse_media_sections(offer_sdp):
            if section.kind in ("audio", "video"):
                media: MediaKind = "audio" if section.kind == "audio" else "video"
                transceiver = pc.addTransceiver(media, direction="recvonly")
                transceiver.setCodecPreferences(_capabilities(media, PREFERRED_CODECS[media]))

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceiver = next(t for t in pc.getTransceivers() if t.receiver.track is track)
            tapped = tap_receiver(transceiver.receiver)
            fanout = TrackFanout(track, request_keyframe=tapped.request_keyframe)
            media: MediaKind = "audio" if track.kind == "audio" else "video"
            kind = kinds.get(transceiver.mid or "", media)
            published = PublishedTrack(
                id=f"TR_{uuid.uuid4().hex[:16]}",
                participant_id=participant_id,
                kind=kind,
                media=media,
                mid=transceiver.mid,
                tap=tapped,
                fanout=fanout,
                hidden=policy.hidden,
            )
            limit = policy.max_size(kind)
            if limit is not None:
                fanout.limit_size(limit, functools.partial(self._over_limit, published, limit))
            fanout.start()
            pending.append(published)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState == "failed":
                logger.info("room %s: publisher %s connection failed", self.id, participant_id)
                await self._unpublish(participant)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as exc:
            participant.publisher = None
            for published in pending:
                await published.fanout.aclose()
            await pc.close()
            if isinstance(exc, RoomError):
                raise
            # aiortc reports a description it cannot apply with assorted exception types (ValueError,
            # InvalidStateError, OperationError, ...): to the caller all of them mean a bad offer.
            raise InvalidOfferError(f"malformed SDP: {exc or type(exc).__name__}") from exc
        answer = pc.localDescription.sdp
        chosen = {s.mid: s.codecs[0] for s in parse_media_sections(answer) if s.codecs}
        for published in pending:
            published.mime_type = chosen.get(published.mid, "")
            participant.tracks[published.id] = published
            self._emit("track_published", participant_id, published)
        return answer

    async def subscribe(
        self,
        subscriber_id: str,
        offer_sdp: str,
        *,
        track_ids: Sequence[str] | None = None,
    ) -> SubscribeResult:
        """Answer a subscriber's offer with forwarded tracks.

        Tracks are matched to the offer's audio/video sections in order, by media kind; sections left over
        are answered inactive, tracks left over are not sent. A video track starts at a keyframe, which
        is requested from its publisher right away.

        Args:
            subscriber_id: A joined participant.
            offer_sdp: SDP offer with receive-only sections.
            track_ids: Tracks to forward (default: every track of every other participant).

        Returns:
            The answer and which track each section carries.

        Raises:
            ParticipantNotFoundError: if the subscriber has not joined.
            RoomError: if a requested track does not exist.
            NotAllowedError: if the subscriber's preset does not allow receiving.
        """
        subscriber = self._get(subscriber_id)
        if not subscriber.policy.subscribe:
            raise NotAllowedError(f"preset {subscriber.policy.preset_name!r} does not allow receiving others' tracks")
        available = {t.id: t for t in self.tracks() if not t.hidden or t.participant_id == subscriber_id}
        if track_ids is None:
            wanted = [t for t in available.values() if t.participant_id != subscriber_id]
        else:
            missing = [i for i in track_ids if i not in available]
            if missing:
                raise RoomError(f"no such tracks: {', '.join(missing)}")
            wanted = [available[i] for i in track_ids]

        pc = RTCPeerConnection(self._configuration)
        assigned: list[tuple[RTCRtpTransceiver, PublishedTrack]] = []
        forwards: list[ForwardTrack] = []
        for section in parse_media_sections(offer_sdp):
            if section.kind not in ("audio", "video"):
                continue
            media: MediaKind = "audio" if section.kind == "audio" else "video"
            track = next((t for t in wanted if t.media == media), None)
            if track is None:
                pc.addTransceiver(media, direction="inactive")
                continue
            wanted.remove(track)
            forward = ForwardTrack(track.fanout.subscribe())
            forwards.append(forward)
            transceiver = pc.addTransceiver(forward, direction="sendonly")
            transceiver.setCodecPreferences(codecs_for_forwarding(media, track.mime_type or PREFERRED_CODECS[media]))
            relay_keyframe_requests(transceiver.sender, track.fanout.request_keyframe)
            assigned.append((transceiver, track))

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception:
            for forward in forwards:
                forward.stop()
            await pc.close()
            raise
        subscriber.subscribers.append(pc)
        subscriber.forwards.extend(forwards)
        return SubscribeResult(
            answer=pc.localDescription.sdp,
            tracks={t.mid or "": track.id for t, track in assigned},
        )

    def set_muted(self, participant_id: str, track_id: str, muted: bool) -> None:
        """Record a client's mute signal; emits ``track_muted`` or ``track_unmuted`` on a change.

        Args:
            participant_id: The publisher.
            track_id: One of its tracks.
            muted: The new state.

        Raises:
            ParticipantNotFoundError: if the participant has not joined.
            RoomError: if the participant has no such track.
        """
        participant = self._get(participant_id)
        track = participant.tracks.get(track_id)
        if track is None:
            raise RoomError(f"participant {participant_id} has no track {track_id}")
        if track.muted != muted:
            track.muted = muted
            self._emit("track_muted" if muted else "track_unmuted", participant_id, track)

    async def _unpublish(self, participant: Participant) -> None:
        tracks, participant.tracks = participant.tracks, {}
        for track in tracks.values():
            await track.fanout.aclose()
            self._emit("track_unpublished", participant.id, track, hidden=participant.hidden)

    async def track_stats(self, participant_id: str) -> list[dict[str, Any]]:
        """Receive-side counters of every track the participant publishes now, for its peer report.

        Per track: frames, keyframes and payload bytes through the tap, RTP packets received and lost and the
        jitter (aiortc's receiver statistics), NACKs and PLIs sent. Empty for an unknown participant.
        """
        participant = self._participants.get(participant_id)
        if participant is None:
            return []
        out: list[dict[str, Any]] = []
        for track in participant.tracks.values():
            tap = track.tap
            received = lost = 0
            jitter: float | None = None
            ssrc: int | None = None
            with contextlib.suppress(Exception):  # statistics are best effort: a closing transport has none
                for stat in (await tap.receiver.getStats()).values():
                    if getattr(stat, "type", None) == "inbound-rtp" and stat.ssrc not in tap._rtx_ssrcs:
                        received += int(stat.packetsReceived)
                        lost += max(0, int(stat.packetsLost))
                        jitter, ssrc = float(stat.jitter), int(stat.ssrc)
            out.append(
                {
                    "track_id": track.id,
                    "kind": track.kind,
                    "mid": track.mid,
                    "mime_type": track.mime_type,
                    "ssrc": ssrc,
                    "frames": tap.frames,
                    "keyframes": tap.keyframes,
                    "bytes": tap.bytes,
                    "packets_received": received,
                    "packets_lost": lost,
                    "jitter": jitter,
                    "nacks_sent": tap.nacks_sent,
                    "nacked_packets": tap.nacked_packets,
                    "plis_sent": tap.plis_sent,
                    "at": time.time(),
                }
            )
        return out

    async def leave(self, participant_id: str) -> None:
        """Remove a participant: unpublish its tracks, close its connections; emits ``participant_left``.

        Args:
            participant_id: The participant; unknown ids are ignored.
        """
        participant = self._participants.pop(participant_id, None)
        if participant is None:
            return
        await self._unpublish(participant)
        for forward in participant.forwards:
            forward.stop()
        pcs = [*participant.subscribers, participant.publisher]
        for pc in pcs:
            if pc is not None:
                with contextlib.suppress(Exception):
                    await pc.close()
        self._emit("participant_left", participant_id, hidden=participant.hidden)

    async def close(self) -> None:
        """Remove every participant."""
        await asyncio.gather(*(self.leave(p) for p in list(self._participants)))
