"""Chat over real signaling between Python clients, on PostgreSQL: send, receive, history on join, refusals,
and ``persist_chat`` with RealtimeKit's ``get session chat`` (a signed, expiring CSV download)."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from cloudflare import AsyncCloudflare
from tests.conftest import Server, start_server, stop_server
from tests.integration.signaling.signaling_helpers import SERVER_ENV, Api, wait_for

from roomtape.agents import ChatMessage, ClientEvent, RoomClient, SignalingError
from roomtape.media.chat import MAX_CHAT_CHARS

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, pg_database_url: str) -> Iterator[Server]:
    srv = start_server(tmp_path_factory.mktemp("chat"), pg_database_url, SERVER_ENV)
    try:
        yield srv
    finally:
        stop_server(srv)


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


def session_chat(api: Api, session_id: str) -> httpx.Response:
    return httpx.get(
        f"{api.base}/sessions/{session_id}/chat",
        headers={"Authorization": f"Bearer {api.server.api_token}"},
        timeout=10,
    )


async def test_messages_reach_the_others_and_later_joiners(api: Api, server: Server) -> None:
    meeting = api.meeting(persist_chat=True)
    alice_id, alice_token = api.participant(meeting, "alice")
    bob_id, bob_token = api.participant(meeting, "bob")
    _, carol_token = api.participant(meeting, "carol")
    alice, bob, carol = (RoomClient(server.base_url, t) for t in (alice_token, bob_token, carol_token))
    await alice.join()
    await bob.join()
    assert alice.chat == [] and bob.chat == []
    try:
        heard: list[ClientEvent] = []
        bob.on("chat", heard.append)
        own: list[ClientEvent] = []
        alice.on("chat", own.append)

        html = '<img src=x onerror="alert(1)"> & <b>bold</b>'
        sent = await alice.send_chat("hello bob")
        sent2 = await alice.send_chat(html)
        await wait_for(lambda: len(heard) == 2, within=10, what="alice's messages at bob's")
        assert [e.chat for e in heard] == [sent, sent2]
        assert (sent.participant_id, sent.name, sent.text) == (alice_id, "alice", "hello bob")
        assert sent2.text == html  # plain text, as written
        assert sent2.time >= sent.time
        reply = await bob.send_chat("hi alice")
        await wait_for(lambda: len(own) == 1, within=10, what="bob's reply at alice's")
        assert own == [ClientEvent("chat", chat=reply)]  # no echo of your own messages
        assert alice.chat == [sent, sent2, reply] == bob.chat

        # A later joiner gets the conversation so far in its welcome.
        await carol.join()
        assert carol.chat == [sent, sent2, reply]

        # Refused messages say why, reach no one and are not stored.
        with pytest.raises(SignalingError, match=f"{MAX_CHAT_CHARS + 1} characters long; at most {MAX_CHAT_CHARS}"):
            await alice.send_chat("x" * (MAX_CHAT_CHARS + 1))
        with pytest.raises(SignalingError, match="empty"):
            await alice.send_chat("   ")
        # A 1 MB message is refused the same way; the connection stays open.
        with pytest.raises(SignalingError, match="at most"):
            await alice.send_chat("y" * 1_000_000)
        last = await alice.send_chat("still here")
        await wait_for(lambda: len(bob.chat) == 4 and len(carol.chat) == 4, within=10, what="the last message")
        assert [m.text for m in bob.chat] == ["hello bob", html, "hi alice", "still here"]
        assert [m.text for m in carol.chat] == ["hello bob", html, "hi alice", "still here"]

        # Stored, and exported as RealtimeKit's chat dump: a signed, expiring URL to a CSV file.
        session_id = alice.session_id
        assert session_id is not None
        answer = session_chat(api, session_id)
        assert answer.status_code == 200, answer.text
        data = answer.json()["data"]
        assert set(data) == {"chat_download_url", "chat_download_url_expiry"}
        async with httpx.AsyncClient(timeout=10) as http:  # no credentials: the URL is one
            download = await http.get(data["chat_download_url"])
        assert download.status_code == 200
        assert download.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(download.content.decode("utf-8"))))
        assert [(r["participantId"], r["displayName"], r["payload"]) for r in rows] == [
            (alice_id, "alice", "hello bob"),
            (alice_id, "alice", html),
            (bob_id, "bob", "hi alice"),
            (alice_id, "alice", "still here"),
        ]
        assert [r["id"] for r in rows] == [sent.id, sent2.id, reply.id, last.id]
        assert all(r["sessionId"] == session_id and r["createdAt"].endswith("Z") for r in rows)

        # The Cloudflare SDK reads the same shape.
        async with AsyncCloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0) as cf:
            chat = await cf.realtime_kit.sessions.get_session_chat(
                session_id, account_id=server.account_id, app_id=server.app_id
            )
        assert chat.success and chat.data is not None and chat.data.chat_download_url.startswith(server.base_url)

        # The signature is the credential: a tampered URL is refused.
        parts = urlsplit(data["chat_download_url"])
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        query["exp"] = str(int(query["exp"]) + 1)
        tampered = urlunsplit(parts._replace(query=urlencode(query)))
        async with httpx.AsyncClient(timeout=10) as http:
            assert (await http.get(tampered)).status_code == 403
    finally:
        for client in (alice, bob, carol):
            await client.leave()


async def test_without_persist_chat_nothing_is_stored(api: Api, server: Server) -> None:
    meeting = api.meeting()  # persist_chat defaults to false, as in RealtimeKit
    _, alice_token = api.participant(meeting, "alice")
    _, bob_token = api.participant(meeting, "bob")
    alice, bob = RoomClient(server.base_url, alice_token), RoomClient(server.base_url, bob_token)
    await alice.join()
    await bob.join()
    try:
        sent = await alice.send_chat("ephemeral")
        await wait_for(lambda: bob.chat == [sent], within=10, what="the message at bob's")
        assert alice.session_id is not None
        answer = session_chat(api, alice.session_id)
        assert answer.status_code == 404
        assert "does not persist_chat" in answer.json()["error"]["message"]
    finally:
        await alice.leave()
        await bob.leave()


async def test_chat_message_shape_round_trips() -> None:
    # The client's dataclass reads exactly what the server writes (media.chat.ChatMessage.to_json).
    from roomtape.media.chat import new_chat_message

    server_side = new_chat_message("p", "N", "t", now=1.5)
    assert ChatMessage.from_json(server_side.to_json()) == ChatMessage(server_side.id, "p", "N", "t", 1.5)
    await asyncio.sleep(0)


async def test_a_preset_without_chat_may_read_but_not_send(api: Api, server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.api_token}"}
    meeting = api.meeting(persist_chat=True)
    _, host_token = api.participant(meeting, "host")
    async with httpx.AsyncClient(timeout=10, headers=auth) as http:
        preset = {"name": "muted-chat", "permissions": {"chat": {"public": {"can_send": False}}}, "config": {}}
        created = await http.post(f"{api.base}/presets", json=preset)
        assert created.status_code == 201, created.text
        added = await http.post(
            f"{api.base}/meetings/{meeting}/participants",
            json={"name": "reader", "preset_name": "muted-chat", "custom_participant_id": "reader"},
        )
    host, quiet = RoomClient(server.base_url, host_token), RoomClient(server.base_url, added.json()["data"]["token"])
    await host.join()
    await quiet.join()
    try:
        assert quiet.permissions["chat"] is False and host.permissions["chat"] is True
        with pytest.raises(SignalingError, match="does not allow sending chat messages"):
            await quiet.send_chat("may I?")
        sent = await host.send_chat("you may read")
        await wait_for(lambda: quiet.chat == [sent], within=10, what="the host's message at the reader's")
        assert host.chat == [sent]  # the refused message reached no one
        assert host.session_id is not None
        url = session_chat(api, host.session_id).json()["data"]["chat_download_url"]
        async with httpx.AsyncClient(timeout=10) as http:
            rows = csv.DictReader(io.StringIO((await http.get(url)).text))
            assert [r["payload"] for r in rows] == ["you may read"]
    finally:
        await host.leave()
        await quiet.leave()
