"""Presets are enforced by signaling and the media plane, with real aiortc clients through a real server:
a viewer's publish offer is refused with a clear error and a host's accepted; a preset change applies at
the next join; hidden participants are not seen; a preset without ``can_subscribe`` gets no media; only
``can_record`` may start the recording from the client; pictures above the preset's quality are not
forwarded."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any, Literal

import cloudflare
import httpx
import numpy as np
import pytest
from aiortc.mediastreams import VideoStreamTrack
from av import VideoFrame
from cloudflare import Cloudflare
from tests.conftest import Server
from tests.integration.media.roomtape_media_peers import CounterVideoTrack, ToneAudioTrack
from tests.integration.signaling.signaling_helpers import Api, Received, read_track, run_signaling_server, wait_for

from roomtape.agents import ClientEvent, RoomClient, whip_publish
from roomtape.agents.client import SignalingError, WhipError

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("presets"))


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


def _call(api: Api, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, api.base + path, headers={"Authorization": f"Bearer {api.server.api_token}"}, timeout=10, **kwargs
    )


def add(api: Api, meeting: str, name: str, preset: str) -> tuple[str, str]:
    r = _call(
        api,
        "POST",
        f"/meetings/{meeting}/participants",
        json={"name": name, "preset_name": preset, "custom_participant_id": name},
    )
    assert r.status_code == 201, r.text
    return r.json()["data"]["id"], r.json()["data"]["token"]


def make_preset(api: Api, name: str, permissions: dict[str, Any], config: dict[str, Any] | None = None) -> None:
    r = _call(api, "POST", "/presets", json={"name": name, "permissions": permissions, "config": config or {}})
    assert r.status_code == 201, r.text


class BigVideoTrack(VideoStreamTrack):
    """Grey pictures, 640x480 unless told: larger than a ``qvga`` preset allows."""

    def __init__(self, width: int = 640, height: int = 480) -> None:
        super().__init__()
        self.picture = np.full((height * 3 // 2, width), 128, dtype=np.uint8)

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = VideoFrame.from_ndarray(self.picture, format="yuv420p")
        frame.pts, frame.time_base = pts, time_base
        return frame


class Watcher:
    """A client that decodes every track it receives."""

    def __init__(self, server: Server, token: str) -> None:
        self.client = RoomClient(server.base_url, token)
        self.received: dict[str, Received] = {}
        self.kinds: dict[str, tuple[str, str]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.errors: list[str] = []
        self.joined: list[str] = []
        self.client.on("track", self._on_track)
        self.client.on("error", lambda e: self.errors.append(e.message or ""))
        self.client.on("participant_joined", lambda e: self.joined.append(e.participant.id if e.participant else ""))

    def _on_track(self, event: ClientEvent) -> None:
        assert event.track is not None and event.track.track is not None
        self.kinds[event.track.id] = (event.track.participant_id, event.track.kind)
        self.received[event.track.id] = got = Received()
        self.tasks.append(read_track(event.track.track, got))

    def frames_from(self, participant_id: str, kind: str) -> int:
        return sum(
            len(r.counters if kind == "video" else r.audio)
            for tid, r in self.received.items()
            if self.kinds[tid] == (participant_id, kind)
        )

    async def close(self) -> None:
        await self.client.leave()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_viewer_publish_is_refused_and_host_publish_accepted(api: Api, server: Server) -> None:
    meeting = api.meeting()
    host_id, host_token = add(api, meeting, "host", "group_call_host")
    viewer_id, viewer_token = add(api, meeting, "viewer", "webinar_viewer")
    host, viewer = Watcher(server, host_token), Watcher(server, viewer_token)
    try:
        await viewer.client.join()
        assert viewer.client.permissions["publish"] == {"audio": False, "video": False, "screen": False}
        assert viewer.client.permissions["preset_name"] == "webinar_viewer"
        with pytest.raises(SignalingError) as refused:
            await viewer.client.publish(audio=ToneAudioTrack(440.0), video=CounterVideoTrack())
        text = str(refused.value)
        assert "webinar_viewer" in text and "does not allow publishing audio" in text and "video" in text

        await host.client.join()
        assert host.client.permissions["publish"]["video"] is True and host.client.permissions["record"] is True
        await host.client.publish(audio=ToneAudioTrack(660.0), video=CounterVideoTrack())
        # The viewer may not publish, but receives the host.
        await wait_for(lambda: viewer.frames_from(host_id, "video") >= 10, 30, "host video at the viewer")
        await wait_for(lambda: viewer.frames_from(host_id, "audio") >= 10, 30, "host audio at the viewer")
        assert all(pid != viewer_id for pid, _ in host.kinds.values())  # nothing of the viewer's was forwarded
    finally:
        await viewer.close()
        await host.close()


async def test_whip_refuses_a_viewer_with_403_before_joining(api: Api, server: Server) -> None:
    meeting = api.meeting()
    _, viewer_token = add(api, meeting, "whip-viewer", "livestream_viewer")
    with pytest.raises(WhipError) as refused:
        await whip_publish(api.whip_url(meeting), viewer_token, {"audio": ToneAudioTrack(440.0)})
    assert refused.value.status == 403 and "livestream_viewer" in str(refused.value)
    assert api.sessions(meeting) == []  # refused before joining: no session was started

    # A host publishes over WHIP fine.
    _, host_token = add(api, meeting, "whip-host", "group_call_host")
    whip = await whip_publish(api.whip_url(meeting), host_token, {"audio": ToneAudioTrack(440.0)})
    await whip.close()


async def test_a_preset_change_applies_at_rejoin(api: Api, server: Server) -> None:
    meeting = api.meeting()
    _, host_token = add(api, meeting, "rejoin-host", "group_call_host")
    person_id, person_token = add(api, meeting, "rejoin-person", "webinar_viewer")
    host = Watcher(server, host_token)
    person = Watcher(server, person_token)
    try:
        await host.client.join()
        await person.client.join()
        with pytest.raises(SignalingError):
            await person.client.publish(video=CounterVideoTrack())
        r = _call(
            api,
            "PATCH",
            f"/meetings/{meeting}/participants/{person_id}",
            json={"preset_name": "group_call_participant"},
        )
        assert r.status_code == 200, r.text
        # Still the old preset on this connection: the change applies at the next join.
        assert person.client.permissions["preset_name"] == "webinar_viewer"
        await person.close()

        person = Watcher(server, r.json()["data"]["token"])
        await person.client.join()
        assert person.client.permissions["preset_name"] == "group_call_participant"
        assert person.client.permissions["record"] is False
        await person.client.publish(video=CounterVideoTrack())
        await wait_for(lambda: host.frames_from(person_id, "video") >= 10, 30, "the rejoined person's video")
        # group_call_participant has no can_record.
        with pytest.raises(SignalingError) as refused:
            await person.client.start_recording()
        assert "does not allow starting or stopping the recording" in str(refused.value)
    finally:
        await person.close()
        await host.close()


async def test_only_can_record_starts_and_stops_the_recording_from_the_client(api: Api, server: Server) -> None:
    meeting = api.meeting()
    host_id, host_token = add(api, meeting, "rec-host", "group_call_host")
    host = Watcher(server, host_token)
    try:
        await host.client.join()
        await host.client.publish(audio=ToneAudioTrack(440.0), video=CounterVideoTrack())
        recording_id = await host.client.start_recording()
        rec = _call(api, "GET", f"/recordings/{recording_id}").json()["data"]
        assert rec["session_id"] == host.client.session_id and rec["status"] in ("INVOKED", "RECORDING")
        assert rec["start_reason"]["caller"]["user_Id"] == host_id and rec["start_reason"]["caller"]["type"] == "USER"
        await asyncio.sleep(1.0)
        assert await host.client.stop_recording() == recording_id
        rec = _call(api, "GET", f"/recordings/{recording_id}").json()["data"]
        assert rec["status"] in ("UPLOADING", "UPLOADED") and rec["stop_reason"]["caller"]["user_Id"] == host_id
        with pytest.raises(SignalingError) as none_running:
            await host.client.stop_recording()
        assert "no recording" in str(none_running.value)
    finally:
        await host.close()


async def test_hidden_participant_and_no_subscribe(api: Api, server: Server) -> None:
    make_preset(api, "ghost", {"hidden_participant": True, "media": {"video": {"can_produce": "NOT_ALLOWED"}}})
    make_preset(api, "deaf", {"can_subscribe": False})
    meeting = api.meeting()
    host_id, host_token = add(api, meeting, "h-host", "group_call_host")
    ghost_id, ghost_token = add(api, meeting, "h-ghost", "ghost")
    deaf_id, deaf_token = add(api, meeting, "h-deaf", "deaf")
    host, ghost, deaf = Watcher(server, host_token), Watcher(server, ghost_token), Watcher(server, deaf_token)
    try:
        await host.client.join()
        await ghost.client.join()
        await ghost.client.publish(audio=ToneAudioTrack(880.0))
        await deaf.client.join()
        await deaf.client.publish(audio=ToneAudioTrack(220.0))
        await host.client.publish(audio=ToneAudioTrack(440.0))
        # The ghost sees and hears the others; the host receives the deaf one's audio but nothing of the ghost.
        await wait_for(lambda: ghost.frames_from(host_id, "audio") >= 20, 30, "host audio at the ghost")
        await wait_for(lambda: host.frames_from(deaf_id, "audio") >= 20, 30, "deaf's audio at the host")
        assert ghost_id not in host.client.participants and ghost_id not in host.joined
        assert ghost_id not in deaf.client.participants and deaf_id in host.client.participants
        assert all(pid != ghost_id for pid, _ in host.kinds.values())
        assert all(t.participant_id != ghost_id for t in host.client.tracks.values())
        # The deaf one got no media at all (while the ghost, joined before it, got the host's).
        assert deaf.received == {} and deaf.client.permissions["subscribe"] is False
    finally:
        for w in (deaf, ghost, host):
            await w.close()


@pytest.mark.parametrize(
    ("codec", "width", "height"),
    [
        ("VP8", 640, 480),  # the size comes from the keyframe header
        # The size comes from the SPS, and 640x360 is coded as 640x368 and cropped, so the limit must see
        # through the cropping correctly.
        ("H264", 640, 360),
    ],
)
async def test_video_above_the_preset_quality_is_not_forwarded(
    api: Api, server: Server, codec: Literal["VP8", "H264"], width: int, height: int
) -> None:
    preset = f"small-{codec.lower()}"
    make_preset(api, preset, {}, {"media": {"video": {"quality": "qvga", "frame_rate": 30}}})
    meeting = api.meeting()
    big_id, big_token = add(api, meeting, f"big-{codec}", preset)
    small_id, small_token = add(api, meeting, f"small-{codec}", preset)
    _, host_token = add(api, meeting, f"q-host-{codec}", "group_call_host")
    big, small, host = Watcher(server, big_token), Watcher(server, small_token), Watcher(server, host_token)
    try:
        await host.client.join()
        await big.client.join()
        assert big.client.permissions["max_video"] == [320, 240]
        await big.client.publish(audio=ToneAudioTrack(440.0), video=BigVideoTrack(width, height), video_codec=codec)
        await small.client.join()
        await small.client.publish(video=CounterVideoTrack(), video_codec=codec)  # 320x240: fits
        for publisher in (big, small):  # the codec under test is the one negotiated
            answer = publisher.client._publisher.remoteDescription.sdp  # type: ignore[union-attr]
            assert [c for c in ("VP8", "H264") if f"{c}/90000" in answer[answer.index("m=video") :]] == [codec]
        await wait_for(lambda: host.frames_from(small_id, "video") >= 10, 30, "the fitting video")
        counters = next(r.counters for t, r in host.received.items() if host.kinds[t] == (small_id, "video"))
        assert counters == sorted(counters) and len(set(counters)) >= 10  # real pictures, in order
        await wait_for(lambda: host.frames_from(big_id, "audio") >= 20, 30, "the big one's audio")
        await wait_for(lambda: any("larger than preset" in e for e in big.errors), 30, "the publisher being told")
        message = next(e for e in big.errors if "larger than preset" in e)
        assert f"{width}x{height}" in message and "320x240" in message and preset in message
        assert host.frames_from(big_id, "video") == 0
    finally:
        for w in (small, big, host):
            await w.close()


async def test_polls_reach_participants_over_signaling_and_votes_follow_presets(api: Api, server: Server) -> None:
    kit = Cloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0).realtime_kit
    ids = {"account_id": server.account_id, "app_id": server.app_id}
    meeting = api.meeting()
    with pytest.raises(cloudflare.ConflictError):  # nobody is in the meeting
        await asyncio.to_thread(kit.active_session.create_poll, meeting, **ids, question="Q?", options=["a", "b"])
    alice_id, alice_token = add(api, meeting, "poll-alice", "group_call_participant")
    _, bob_token = add(api, meeting, "poll-bob", "group_call_host")
    _, viewer_token = add(api, meeting, "poll-viewer", "livestream_viewer")  # polls.can_vote: false
    alice, bob, viewer = Watcher(server, alice_token), Watcher(server, bob_token), Watcher(server, viewer_token)
    polls: list[dict[str, Any]] = []
    bob.client.on("poll", lambda e: polls.append(e.poll or {}))
    try:
        for w in (alice, bob, viewer):
            await w.client.join()
        created = await asyncio.to_thread(
            kit.active_session.create_poll, meeting, **ids, question="Lunch?", options=["pizza", "soup"]
        )
        assert created.success and created.data and created.data.poll
        poll = created.data.poll
        assert poll.question == "Lunch?" and [o.text for o in poll.options] == ["pizza", "soup"]
        assert all(o.count == 0 for o in poll.options) and poll.created_by == "ORGANIZATION"
        await wait_for(lambda: all(poll.id in w.client.polls for w in (alice, bob, viewer)), 10, "the poll delivered")

        counted = await alice.client.vote(poll.id, 1)
        assert [o["count"] for o in counted["options"]] == [0, 1]
        assert counted["options"][1]["votes"] == [{"id": alice_id, "name": "poll-alice"}]
        await wait_for(lambda: any(p["options"][1]["count"] == 1 for p in polls), 10, "bob sees the new count")
        with pytest.raises(SignalingError) as twice:
            await alice.client.vote(poll.id, 0)
        assert "voted" in str(twice.value)
        with pytest.raises(SignalingError) as refused:
            await viewer.client.vote(poll.id, 0)
        assert "livestream_viewer" in str(refused.value) and "voting" in str(refused.value)
        with pytest.raises(SignalingError):
            await bob.client.vote(poll.id, 7)
        assert [o["count"] for o in bob.client.polls[poll.id]["options"]] == [0, 1]

        # A late joiner gets the session's polls in its welcome.
        _, late_token = add(api, meeting, "poll-late", "group_call_participant")
        late = Watcher(server, late_token)
        await late.client.join()
        assert late.client.polls[poll.id]["options"][1]["count"] == 1
        await late.close()
    finally:
        for w in (viewer, bob, alice):
            await w.close()

    # Another account cannot create polls in our meeting.
    other = server.new_app("poll-intruder")
    intruder = Cloudflare(api_token=other["api_token"], base_url=server.base_url, max_retries=0).realtime_kit
    with pytest.raises(cloudflare.NotFoundError):
        await asyncio.to_thread(intruder.active_session.create_poll, meeting, **ids, question="x", options=["y"])
