"""People meet through a real roomtape server: Python clients over the signaling WebSocket, a WHIP publisher,
late joiners and mutes. Media is checked by content: a frame counter drawn in the picture and a tone whose
frequency says who sent it."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from tests.conftest import Server
from tests.integration.media.roomtape_media_peers import CounterVideoTrack, ToneAudioTrack, dominant_frequency
from tests.integration.signaling.signaling_helpers import Api, Received, read_track, run_signaling_server, wait_for

from roomtape.agents import ClientEvent, RemoteTrack, RoomClient, whip_publish

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("signaling"))


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


class Person:
    """A Python client that publishes a counter picture and a tone, and decodes everything it receives."""

    def __init__(self, server: Server, token: str, frequency: float, first_counter: int) -> None:
        self.client = RoomClient(server.base_url, token)
        self.frequency = frequency
        self.video = CounterVideoTrack()
        self.video.counter = first_counter
        self.received: dict[str, Received] = {}
        self.remote: dict[str, RemoteTrack] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.client.on("track", self._on_track)

    def _on_track(self, event: ClientEvent) -> None:
        assert event.track is not None and event.track.track is not None
        self.remote[event.track.id] = event.track
        self.received[event.track.id] = received = Received()
        self.tasks.append(read_track(event.track.track, received))

    def from_(self, participant_id: str, kind: str) -> Received:
        track = next(t for t in self.remote.values() if t.participant_id == participant_id and t.kind == kind)
        return self.received[track.id]

    def has(self, participant_id: str, kind: str, frames: int) -> bool:
        try:
            got = self.from_(participant_id, kind)
        except StopIteration:
            return False
        return len(got.counters if kind == "video" else got.audio) >= frames

    async def join_and_publish(self) -> None:
        await self.client.join()
        await self.client.publish(audio=ToneAudioTrack(self.frequency), video=self.video)

    async def close(self) -> None:
        await self.client.leave()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def people() -> AsyncIterator[list[Person]]:
    made: list[Person] = []
    yield made
    for person in made:
        await person.close()


def hears(received: Received, frequency: float) -> bool:
    samples = np.concatenate(received.audio[-100:])  # the last 2 s
    return abs(dominant_frequency(samples) - frequency) < 3.0


async def test_two_python_clients_see_and_hear_each_other(api: Api, server: Server, people: list[Person]) -> None:
    meeting = api.meeting()
    alice_id, alice_token = api.participant(meeting, "alice")
    bob_id, bob_token = api.participant(meeting, "bob")
    alice = Person(server, alice_token, 440.0, first_counter=1000)
    bob = Person(server, bob_token, 660.0, first_counter=30000)
    people += [alice, bob]

    await alice.join_and_publish()
    bob_joined = asyncio.ensure_future(alice.client.wait_for("participant_joined"))
    await bob.join_and_publish()
    assert (await bob_joined).participant is not None
    assert alice.client.session_id == bob.client.session_id
    assert set(bob.client.participants) == {alice_id}
    assert {t.participant_id for t in bob.client.tracks.values()} == {alice_id}  # alice's tracks in the welcome

    await wait_for(
        lambda: all(
            p.has(o, k, 100 if k == "audio" else 45)
            for p, o in ((alice, bob_id), (bob, alice_id))
            for k in ("audio", "video")
        ),
        within=20,
        what="two seconds of audio and video both ways",
    )
    for me, other, sender in ((alice, bob_id, bob), (bob, alice_id, alice)):
        counters = me.from_(other, "video").counters
        assert all(b > a for a, b in itertools.pairwise(counters)), counters
        # The picture carries the sender's own counter range: alice draws from 1000, bob from 30000.
        first = 30000 if sender is bob else 1000
        assert first <= counters[0] and counters[-1] < sender.video.counter
        assert hears(me.from_(other, "audio"), sender.frequency)
        assert {t.kind for t in me.remote.values() if t.participant_id == other} == {"audio", "video"}


async def test_whip_publisher_is_seen_by_a_websocket_subscriber_and_delete_leaves(
    api: Api, server: Server, people: list[Person]
) -> None:
    meeting = api.meeting()
    obs_id, obs_token = api.participant(meeting, "obs")
    _, viewer_token = api.participant(meeting, "viewer")
    viewer = Person(server, viewer_token, 330.0, first_counter=0)
    people.append(viewer)
    await viewer.client.join()

    video = CounterVideoTrack()
    video.counter = 5000
    whip = await whip_publish(api.whip_url(meeting), obs_token, {"audio": ToneAudioTrack(550.0), "video": video})
    try:
        assert whip.resource_url.startswith(f"{server.base_url}/v1/meetings/{meeting}/whip/")
        await wait_for(
            lambda: viewer.has(obs_id, "video", 30) and viewer.has(obs_id, "audio", 100), within=15, what="WHIP media"
        )
        counters = viewer.from_(obs_id, "video").counters
        assert all(b > a for a, b in itertools.pairwise(counters)) and counters[0] >= 5000
        assert hears(viewer.from_(obs_id, "audio"), 550.0)
        left = asyncio.ensure_future(
            viewer.client.wait_for(
                "participant_left", lambda e: e.participant is not None and e.participant.id == obs_id
            )
        )
    finally:
        await whip.close()
    await left
    # The viewer's copies of the WHIP tracks end when they are unpublished.
    await wait_for(lambda: viewer.from_(obs_id, "video").ended, within=5, what="track end")


async def test_late_joiner_sees_video_within_a_second_and_mutes_reach_others(
    api: Api, server: Server, people: list[Person]
) -> None:
    meeting = api.meeting()
    alice_id, alice_token = api.participant(meeting, "alice")
    carol_id, carol_token = api.participant(meeting, "carol")
    alice = Person(server, alice_token, 440.0, first_counter=100)
    people.append(alice)
    await alice.join_and_publish()
    await asyncio.sleep(1.5)  # alice's first keyframe is long gone: carol needs a fresh one (PLI)

    carol = Person(server, carol_token, 880.0, first_counter=200)
    people.append(carol)
    started = time.monotonic()
    await carol.client.join()
    await wait_for(lambda: carol.has(alice_id, "video", 1), within=10, what="first picture")
    first_picture = carol.from_(alice_id, "video").first_frame_at
    assert first_picture is not None
    elapsed = first_picture - started
    print(f"late joiner: first picture {elapsed:.3f} s after join() started")
    assert elapsed < 1.0

    # Mute and unmute are events to the others, with the track id they know.
    await carol.client.publish(audio=ToneAudioTrack(880.0), video=carol.video)
    await wait_for(lambda: alice.has(carol_id, "audio", 5), within=10, what="carol's audio at alice")
    carol_audio = carol.client.published["audio"]
    muted = asyncio.ensure_future(alice.client.wait_for("track_muted"))
    await carol.client.set_muted("audio", True)
    event = await muted
    assert event.track is not None and event.track.id == carol_audio and event.track.muted
    assert alice.client.tracks[carol_audio].muted
    unmuted = asyncio.ensure_future(alice.client.wait_for("track_unmuted"))
    await carol.client.set_muted("audio", False)
    event = await unmuted
    assert event.track is not None and event.track.id == carol_audio and not event.track.muted


async def test_push_tracks_carry_pcm_and_pictures(
    api: Api, server: Server, people: list[Person], tmp_path: Path
) -> None:
    from roomtape.agents import AudioPushTrack, VideoPushTrack

    meeting = api.meeting()
    agent_id, agent_token = api.participant(meeting, "agent")
    _, user_token = api.participant(meeting, "user")
    user = Person(server, user_token, 220.0, first_counter=0)
    people.append(user)
    await user.client.join()
    agent = RoomClient(server.base_url, agent_token)
    await agent.join()
    try:
        mic, cam = AudioPushTrack(), VideoPushTrack(width=320, height=240, fps=15)
        await agent.publish(audio=mic, video=cam)
        t = np.arange(48000 * 4) / 48000
        mic.push((0.5 * 32767 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.int16))
        cam.push(np.full((240, 320, 3), 255, dtype=np.uint8))
        await wait_for(
            lambda: user.has(agent_id, "audio", 120) and user.has(agent_id, "video", 10), within=15, what="pushed media"
        )
        assert hears(user.from_(agent_id, "audio"), 1000.0)
    finally:
        await agent.leave()
