"""Joins and leaves over real signaling become session rows, sessions API answers and outbox events; kicks
disconnect people."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from tests.conftest import Server
from tests.integration.signaling.signaling_helpers import (
    KEEP_ALIVE_SCALE,
    Api,
    outbox,
    run_signaling_server,
    wait_for,
)

from roomtape.agents import RoomClient

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("sessions"))


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


async def test_session_lives_from_first_join_to_last_leave_plus_keep_alive(api: Api, server: Server) -> None:
    meeting = api.meeting(session_keep_alive_time_in_secs=120)  # 1.2 s on this server
    alice_id, alice_token = api.participant(meeting, "alice")
    bob_id, bob_token = api.participant(meeting, "bob")
    alice = RoomClient(server.base_url, alice_token)
    bob = RoomClient(server.base_url, bob_token)
    await alice.join()
    await bob.join()

    (session,) = api.sessions(meeting)
    assert session["id"] == alice.session_id == bob.session_id
    assert session["status"] == "LIVE" and session["live_participants"] == 2
    stays = api.session_participants(session["id"])
    assert {p["user_id"] for p in stays} == {alice_id, bob_id}
    assert all(p["left_at"] is None for p in stays)

    # Everyone leaves, and alice is back within the keep-alive: same session.
    left = asyncio.ensure_future(alice.wait_for("participant_left"))
    await bob.leave()
    assert (await left).participant is not None
    await alice.leave()
    alice = RoomClient(server.base_url, alice_token)
    await alice.join()
    assert alice.session_id == session["id"]
    await asyncio.sleep(120 * KEEP_ALIVE_SCALE + 0.3)  # past the keep-alive of the first leave
    assert [s["status"] for s in api.sessions(meeting)] == ["LIVE"]

    # The last leave plus the keep-alive ends it.
    await alice.leave()
    await wait_for(lambda: api.sessions(meeting)[0]["status"] == "ENDED", within=10, what="session end")
    (ended,) = api.sessions(meeting)
    assert ended["ended_at"] is not None and ended["max_concurrent_participants"] == 2
    stays = api.session_participants(session["id"])
    assert all(p["left_at"] is not None for p in stays)

    events = [name for name, _ in await outbox(server, meeting)]
    assert events[0] == "meeting.started" and events[-1] == "meeting.ended"
    assert events.count("meeting.started") == 1 and events.count("meeting.ended") == 1
    assert events.count("meeting.participantJoined") == 3
    assert events.count("meeting.participantLeft") == 3

    # A join after the end starts a new session.
    again = RoomClient(server.base_url, bob_token)
    await again.join()
    try:
        assert again.session_id != session["id"]
    finally:
        await again.leave()


async def test_kick_disconnects_the_participant(api: Api, server: Server) -> None:
    meeting = api.meeting()
    _, alice_token = api.participant(meeting, "alice")
    bob_id, bob_token = api.participant(meeting, "bob")
    alice = RoomClient(server.base_url, alice_token)
    bob = RoomClient(server.base_url, bob_token)
    await alice.join()
    await bob.join()
    try:
        kicked = asyncio.ensure_future(bob.wait_for("kicked"))
        closed = asyncio.ensure_future(bob.wait_for("closed"))
        gone = asyncio.ensure_future(alice.wait_for("participant_left"))
        result = await asyncio.to_thread(api.kick, meeting, [bob_id])
        assert [p["id"] for p in result["participants"]] == [bob_id]
        await kicked
        await closed
        assert bob.close_code == 4001
        event = await gone
        assert event.participant is not None and event.participant.id == bob_id
        stays = api.session_participants(api.sessions(meeting)[0]["id"])
        assert next(p for p in stays if p["user_id"] == bob_id)["left_at"] is not None
    finally:
        await alice.leave()
        await bob.leave()


async def test_kick_all_and_a_second_connection_replaces_the_first(api: Api, server: Server) -> None:
    meeting = api.meeting()
    _, alice_token = api.participant(meeting, "alice")
    _, bob_token = api.participant(meeting, "bob")
    first = RoomClient(server.base_url, alice_token)
    await first.join()
    replaced = asyncio.ensure_future(first.wait_for("closed"))
    second = RoomClient(server.base_url, alice_token)
    await second.join()
    await replaced
    assert first.close_code == 4002
    bob = RoomClient(server.base_url, bob_token)
    await bob.join()
    try:
        closed = [asyncio.ensure_future(c.wait_for("closed")) for c in (second, bob)]
        response = await asyncio.to_thread(api._call, "POST", f"/meetings/{meeting}/active-session/kick-all")
        assert response["kicked_participants_count"] == 2
        await asyncio.gather(*closed)
        assert second.close_code == bob.close_code == 4001
        await wait_for(lambda: api.sessions(meeting)[0]["status"] == "ENDED", within=10, what="session end")
    finally:
        for client in (first, second, bob):
            await client.leave()
