"""The server-offered downlink against real aiortc peers on loopback: renegotiation as tracks come and go."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable

import pytest
from aiortc import MediaStreamTrack, RTCBundlePolicy, RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame
from tests.integration.media.roomtape_media_peers import (
    CounterVideoTrack,
    ToneAudioTrack,
    accept_answer,
    no_ice_servers,
    publisher_offer,
    read_counter,
)

from roomtape.media.downlink import Downlink, DownlinkOffer
from roomtape.media.room import Room

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def room() -> AsyncIterator[Room]:
    room = Room("RM_downlink")
    yield room
    await room.close()


async def wait_for(predicate: Callable[[], bool], within: float) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.02)


class Answerer:
    """A client that answers the downlink's offers and decodes what it gets, per track id."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.by_mid: dict[str, str] = {}
        self.counters: dict[str, list[int]] = {}
        self.first_frame_at: dict[str, float] = {}
        self.audio_frames: dict[str, int] = {}
        self.tasks: list[asyncio.Future[None]] = []
        self.offers: list[DownlinkOffer] = []
        self.downlink: Downlink | None = None

        @self.pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            transceiver = next(t for t in self.pc.getTransceivers() if t.receiver.track is track)
            self.tasks.append(asyncio.ensure_future(self._read(transceiver.mid or "", track)))

    async def on_offer(self, offer: DownlinkOffer) -> None:
        self.offers.append(offer)
        self.by_mid.update({mid: t.track_id for mid, t in offer.tracks.items()})
        self.tasks.append(asyncio.ensure_future(self._answer(offer)))

    async def _answer(self, offer: DownlinkOffer) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer.sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        assert self.downlink is not None
        await self.downlink.accept_answer(self.pc.localDescription.sdp)

    async def _read(self, mid: str, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                track_id = self.by_mid[mid]
                self.first_frame_at.setdefault(track_id, time.monotonic())
                if isinstance(frame, VideoFrame):
                    self.counters.setdefault(track_id, []).append(read_counter(frame))
                else:
                    self.audio_frames[track_id] = self.audio_frames.get(track_id, 0) + 1
        except MediaStreamError:
            pass

    async def close(self) -> None:
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def publish(room: Room, participant_id: str, frequency: float) -> RTCPeerConnection:
    room.join(participant_id)
    pc = RTCPeerConnection(no_ice_servers())
    offer = await publisher_offer(pc, CounterVideoTrack(), ToneAudioTrack(frequency))
    answer = await room.publish(participant_id, offer)
    await accept_answer(pc, answer)
    return pc


async def test_downlink_renegotiates_when_tracks_come_and_go(room: Room) -> None:
    alice = await publish(room, "alice", 440.0)
    room.join("bob")
    bob = Answerer()
    downlink = Downlink(room, "bob", bob.on_offer)
    bob.downlink = downlink
    carol: RTCPeerConnection | None = None
    try:
        started = time.monotonic()
        downlink.start()
        alice_video = next(t.id for t in room.tracks() if t.participant_id == "alice" and t.kind == "video")
        await wait_for(lambda: len(bob.counters.get(alice_video, [])) >= 10, within=10)
        first = bob.first_frame_at[alice_video] - started
        print(f"downlink: first picture {first:.3f} s after start")
        assert first < 1.5
        assert len(bob.offers) == 1 and len(bob.offers[0].tracks) == 2

        # A second publisher arrives: one renegotiation adds both of its tracks, on the same transport.
        carol = await publish(room, "carol", 660.0)
        carol_video = next(t.id for t in room.tracks() if t.participant_id == "carol" and t.kind == "video")
        t0 = time.monotonic()
        await wait_for(lambda: len(bob.counters.get(carol_video, [])) >= 10, within=10)
        print(f"downlink: renegotiated picture {bob.first_frame_at[carol_video] - t0:.3f} s after publish")
        assert bob.first_frame_at[carol_video] - t0 < 1.0
        assert {t.participant_id for t in bob.offers[-1].tracks.values()} == {"alice", "carol"}
        counters = bob.counters[carol_video]
        assert all(b > a for a, b in itertools.pairwise(counters))

        # Carol leaves: her sections go inactive in the next offer, alice keeps flowing.
        await room.leave("carol")
        await wait_for(lambda: {t.participant_id for t in bob.offers[-1].tracks.values()} == {"alice"}, within=5)
        assert set(downlink.forwarded()) == {t.id for t in room.tracks() if t.participant_id == "alice"}
        before = len(bob.counters[alice_video])
        await wait_for(lambda: len(bob.counters[alice_video]) > before + 10, within=5)
    finally:
        await bob.close()
        await alice.close()
        if carol is not None:
            await carol.close()
        await downlink.aclose()


async def test_answer_without_offer_is_refused(room: Room) -> None:
    room.join("bob")
    sent: list[DownlinkOffer] = []

    async def collect(offer: DownlinkOffer) -> None:
        sent.append(offer)

    downlink = Downlink(room, "bob", collect)
    downlink.start()
    try:
        with pytest.raises(Exception, match="no offer is waiting"):
            await downlink.accept_answer("v=0\r\n")
        await asyncio.sleep(0.1)
        assert sent == []  # nothing to forward yet: no offer with zero sections
    finally:
        await downlink.aclose()
