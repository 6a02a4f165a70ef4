"""Drive the real Cloudflare SDK (``client.realtime_kit``) through every operation of the service issue,
against a real roomtape server on a free port, on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import cloudflare
import httpx
import jwt
import pytest
from cloudflare import Cloudflare
from tests.conftest import Server

from roomtape.db import lifecycle
from roomtape.db.engine import create_engine, session_factory
from roomtape.db.models import Meeting, Participant


@pytest.fixture(scope="module")
def cf(server: Server) -> Iterator[Cloudflare]:
    client = Cloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0)
    yield client
    client.close()


def _ids(server: Server) -> dict[str, str]:
    return {"account_id": server.account_id, "app_id": server.app_id}


def run_lifecycle(server: Server, coro_fn):  # type: ignore[no-untyped-def]
    """Run a session-lifecycle call against the server's database, as the media plane will."""

    async def go():  # type: ignore[no-untyped-def]
        engine = create_engine(server.database_url)
        try:
            async with session_factory(engine)() as db:
                result = await coro_fn(db)
                await db.commit()
                return result
        finally:
            await engine.dispose()

    return asyncio.run(go())


def test_apps_list_and_create(cf: Cloudflare, server: Server) -> None:
    listed = cf.realtime_kit.apps.get(account_id=server.account_id)
    assert listed.success is True
    assert listed.data and server.app_id in {a.id for a in listed.data}
    assert listed.paging is not None and listed.paging.total_count >= 1

    created = cf.realtime_kit.apps.post(account_id=server.account_id, name="second app")
    assert created.success and created.data and created.data.app
    new = created.data.app
    assert new.name == "second app" and new.id and isinstance(new.created_at, datetime)
    again = cf.realtime_kit.apps.get(account_id=server.account_id, search="second", per_page=5)
    assert [a.id for a in again.data or []] == [new.id]
    # The account's token works for the new app at once.
    m = cf.realtime_kit.meetings.create(new.id, account_id=server.account_id, title="in second app")
    assert m.data and m.data.title == "in second app"


def test_meetings_create_get_list_replace_update(cf: Cloudflare, server: Server) -> None:
    meetings = cf.realtime_kit.meetings
    before = datetime.now(UTC) - timedelta(seconds=5)
    created = meetings.create(
        server.app_id,
        account_id=server.account_id,
        title="Weekly sync",
        record_on_start=True,
        session_keep_alive_time_in_secs=120,
        persist_chat=True,
        ai_config={"transcription": {"language": "en-US", "keywords": ["roomtape"]}},
        recording_config={
            "max_seconds": 3600,
            "file_name_prefix": "sync",
            "audio_config": {"channel": "stereo", "codec": "AAC", "export_file": True},
            "video_config": {"codec": "VP8", "width": 1280, "height": 720},
        },
    )
    assert created.success and created.data
    m = created.data
    assert m.title == "Weekly sync" and m.status == "ACTIVE" and m.record_on_start is True
    assert m.session_keep_alive_time_in_secs == 120 and m.persist_chat is True
    assert m.recording_config and m.recording_config.audio_config
    assert m.recording_config.audio_config.channel == "stereo" and m.recording_config.max_seconds == 3600
    assert m.ai_config and m.ai_config.transcription and m.ai_config.transcription.language == "en-US"
    assert m.created_at >= before and m.updated_at >= m.created_at

    got = meetings.get_meeting_by_id(m.id, **_ids(server))
    assert got.data and got.data.id == m.id and got.data.title == "Weekly sync"

    for i in range(3):
        meetings.create(server.app_id, account_id=server.account_id, title=f"standup {i}")
    page1 = meetings.get(server.app_id, account_id=server.account_id, search="standup", per_page=2, page_no=1)
    page2 = meetings.get(server.app_id, account_id=server.account_id, search="standup", per_page=2, page_no=2)
    assert page1.paging.total_count == 3 and len(page1.data) == 2 and len(page2.data) == 1
    assert page2.paging.start_offset == 2 and page2.paging.end_offset == 3
    assert not {x.id for x in page1.data} & {x.id for x in page2.data}
    by_id = meetings.get(server.app_id, account_id=server.account_id, search=m.id)
    assert [x.id for x in by_id.data] == [m.id]
    future = meetings.get(
        server.app_id, account_id=server.account_id, start_time=datetime.now(UTC) + timedelta(hours=1)
    )
    assert future.data == [] and future.paging.total_count == 0
    window = meetings.get(
        server.app_id,
        account_id=server.account_id,
        start_time=before,
        end_time=datetime.now(UTC) + timedelta(seconds=5),
        search="Weekly",
    )
    assert [x.id for x in window.data] == [m.id]

    replaced = meetings.replace_meeting_by_id(m.id, **_ids(server), title="Replaced", persist_chat=False)
    assert replaced.data and replaced.data.title == "Replaced"
    # PUT replaces: fields not given return to defaults.
    assert replaced.data.record_on_start is False and replaced.data.session_keep_alive_time_in_secs == 60
    assert replaced.data.recording_config is None

    updated = meetings.update_meeting_by_id(
        m.id, **_ids(server), status="INACTIVE", session_keep_alive_time_in_secs=600
    )
    assert updated.data and updated.data.status == "INACTIVE" and updated.data.title == "Replaced"
    assert updated.data.session_keep_alive_time_in_secs == 600
    inactive = meetings.get(server.app_id, account_id=server.account_id, status="INACTIVE")
    assert m.id in {x.id for x in inactive.data}


@pytest.mark.parametrize("value", [59, 601, -1, 10_000])
def test_keep_alive_out_of_range_is_400_and_changes_nothing(cf: Cloudflare, server: Server, value: int) -> None:
    meetings = cf.realtime_kit.meetings
    m = meetings.create(server.app_id, account_id=server.account_id, title="keepalive").data
    assert m is not None
    with pytest.raises(cloudflare.BadRequestError) as err:
        meetings.update_meeting_by_id(m.id, **_ids(server), session_keep_alive_time_in_secs=value, title="changed")
    assert "session_keep_alive_time_in_secs" in str(err.value.body)
    with pytest.raises(cloudflare.BadRequestError):
        meetings.create(server.app_id, account_id=server.account_id, session_keep_alive_time_in_secs=value)
    after = meetings.get_meeting_by_id(m.id, **_ids(server)).data
    assert after and after.title == "keepalive" and after.session_keep_alive_time_in_secs == 60


def test_participants_lifecycle(cf: Cloudflare, server: Server) -> None:
    meetings = cf.realtime_kit.meetings
    m = meetings.create(server.app_id, account_id=server.account_id, title="with people").data
    assert m is not None
    ids = {**_ids(server), "meeting_id": m.id}
    added = meetings.add_participant(
        m.id, **_ids(server), custom_participant_id="alice-1", preset_name="group_call_host", name="Alice"
    )
    assert added.success and added.data
    alice = added.data
    assert alice.custom_participant_id == "alice-1" and alice.preset_name == "group_call_host"
    assert alice.name == "Alice" and alice.token
    claims = jwt.decode(alice.token, options={"verify_signature": False})
    assert claims["mtg"] == m.id and claims["sub"] == alice.id and claims["exp"] > claims["iat"]

    bob = meetings.add_participant(
        m.id, **_ids(server), custom_participant_id="bob-1", preset_name="group_call_participant"
    ).data
    assert bob is not None
    with pytest.raises(cloudflare.ConflictError):
        meetings.add_participant(
            m.id, **_ids(server), custom_participant_id="bob-1", preset_name="group_call_participant"
        )

    listed = meetings.get_meeting_participants(m.id, **_ids(server), per_page=1)
    assert listed.paging.total_count == 2 and [p.id for p in listed.data] == [alice.id]
    got = meetings.get_meeting_participant(bob.id, **ids)
    assert got.data.id == bob.id and got.data.preset_name == "group_call_participant"

    edited = meetings.edit_participant(bob.id, **ids, name="Bob", preset_name="group_call_host")
    assert (
        edited.data and edited.data.name == "Bob" and edited.data.preset_name == "group_call_host" and edited.data.token
    )

    old_token = alice.token
    refreshed = meetings.refresh_participant_token(alice.id, **ids)
    assert refreshed.data.token and refreshed.data.token != old_token
    assert jwt.decode(refreshed.data.token, options={"verify_signature": False})["ver"] == claims["ver"] + 1

    deleted = meetings.delete_meeting_participant(bob.id, **ids)
    assert deleted.data and deleted.data.custom_participant_id == "bob-1" and deleted.data.preset_id
    with pytest.raises(cloudflare.NotFoundError):
        meetings.get_meeting_participant(bob.id, **ids)
    assert meetings.get_meeting_participants(m.id, **_ids(server)).paging.total_count == 1


def test_webhooks_crud(cf: Cloudflare, server: Server) -> None:
    wh = cf.realtime_kit.webhooks
    created = wh.create_webhook(
        server.app_id,
        account_id=server.account_id,
        name="all meeting events",
        url="http://127.0.0.1:9/hook",
        events=["meeting.started", "meeting.ended", "recording.statusUpdate"],
    )
    assert created.success and created.data.enabled is True
    hook = created.data
    assert hook.events == ["meeting.started", "meeting.ended", "recording.statusUpdate"]
    listed = wh.get_webhooks(server.app_id, account_id=server.account_id)
    assert hook.id in {w.id for w in listed.data}
    assert wh.get_webhook_by_id(hook.id, **_ids(server)).data.url == "http://127.0.0.1:9/hook"
    replaced = wh.replace_webhook(
        hook.id, **_ids(server), name="renamed", url="https://example.invalid/h", events=["meeting.transcript"]
    )
    assert replaced.data.name == "renamed" and replaced.data.events == ["meeting.transcript"]
    edited = wh.edit_webhook(hook.id, **_ids(server), enabled=False)
    assert edited.data.enabled is False and edited.data.name == "renamed"
    with pytest.raises(cloudflare.BadRequestError):
        wh.edit_webhook(hook.id, **_ids(server), events=["no.such.event"])  # type: ignore[list-item]
    with pytest.raises(cloudflare.BadRequestError):
        wh.create_webhook(
            server.app_id, account_id=server.account_id, name="x", url="not a url", events=["meeting.ended"]
        )
    deleted = wh.delete_webhook(hook.id, **_ids(server))
    assert deleted.data.id == hook.id
    with pytest.raises(cloudflare.NotFoundError):
        wh.get_webhook_by_id(hook.id, **_ids(server))


def test_sessions_and_active_session(cf: Cloudflare, server: Server) -> None:
    kit = cf.realtime_kit
    m = kit.meetings.create(server.app_id, account_id=server.account_id, title="Session room").data
    assert m is not None
    people = [
        kit.meetings.add_participant(
            m.id, **_ids(server), custom_participant_id=f"p{i}", preset_name="group_call_participant", name=f"P{i}"
        ).data
        for i in range(3)
    ]
    with pytest.raises(cloudflare.NotFoundError):
        kit.active_session.get_active_session(m.id, **_ids(server))

    async def join_all(db):  # type: ignore[no-untyped-def]
        meeting = await db.get(Meeting, m.id)
        stays = []
        for p in people:
            participant = await db.get(Participant, p.id)
            _, stay = await lifecycle.participant_joined(db, meeting, participant)
            stays.append(stay.id)
        return stays

    run_lifecycle(server, join_all)

    active = kit.active_session.get_active_session(m.id, **_ids(server))
    assert active.data and active.data.status == "LIVE" and active.data.live_participants == 3
    session_id = active.data.id
    assert active.data.associated_id == m.id and active.data.meeting_display_name == "Session room"

    sessions = kit.sessions.get_sessions(server.app_id, account_id=server.account_id, associated_id=m.id)
    assert sessions.data and [x.id for x in sessions.data.sessions or []] == [session_id]
    assert sessions.paging and sessions.paging.total_count == 1
    live = kit.sessions.get_sessions(server.app_id, account_id=server.account_id, status="LIVE", search="Session room")
    assert session_id in {x.id for x in live.data.sessions or []}

    details = kit.sessions.get_session_details(session_id, **_ids(server))
    assert details.data and details.data.max_concurrent_participants == 3

    parts = kit.sessions.get_session_participants(session_id, **_ids(server), include_peer_events=True)
    assert parts.data and len(parts.data.participants or []) == 3
    first = (parts.data.participants or [])[0]
    assert first.peer_events and first.peer_events[0].event_name == "PEER_JOINING"
    one = kit.sessions.get_session_participant_details(people[0].id, **_ids(server), session_id=session_id)
    assert one.data and one.data.participant and one.data.participant.custom_participant_id == "p0"

    kicked = kit.active_session.kick_participants(m.id, **_ids(server), custom_participant_ids=["p0"])
    assert kicked.data and [p.id for p in kicked.data.participants or []] == [people[0].id]
    assert kit.active_session.get_active_session(m.id, **_ids(server)).data.live_participants == 2
    all_out = kit.active_session.kick_all_participants(m.id, **_ids(server))
    assert all_out.data and all_out.data.kicked_participants_count == 2

    async def end(db):  # type: ignore[no-untyped-def]
        return await lifecycle.end_session_if_idle(db, session_id)

    assert run_lifecycle(server, end) is True
    ended = kit.sessions.get_session_details(session_id, **_ids(server))
    assert ended.data and ended.data.status == "ENDED" and ended.data.ended_at
    with pytest.raises(cloudflare.NotFoundError):
        kit.active_session.get_active_session(m.id, **_ids(server))
    raw = kit.sessions.get_session_participants(session_id, **_ids(server))
    assert all(p.left_at for p in raw.data.participants or [])


def test_auth_missing_wrong_and_foreign_tokens(cf: Cloudflare, server: Server) -> None:
    m = cf.realtime_kit.meetings.create(server.app_id, account_id=server.account_id, title="private").data
    assert m is not None
    url = f"{server.base_url}/accounts/{server.account_id}/realtime/kit/{server.app_id}/meetings/{m.id}"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer rt_wrong"}).status_code == 401
    body = httpx.get(url, headers={"Authorization": "Bearer rt_wrong"}).json()
    assert body["success"] is False and body["error"]["code"] == 401

    with pytest.raises(cloudflare.AuthenticationError):
        Cloudflare(api_token="rt_nope", base_url=server.base_url, max_retries=0).realtime_kit.meetings.get(
            server.app_id, account_id=server.account_id
        )

    # A participant join token is refused by the admin API.
    token = cf.realtime_kit.meetings.add_participant(
        m.id, **_ids(server), custom_participant_id="eve", preset_name="group_call_participant"
    ).data.token
    r = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401 and "participant" in r.json()["error"]["message"]

    # Another account's token sees nothing of ours, and we see nothing of theirs: 404 with no data.
    other = server.new_app("intruder")
    intruder = Cloudflare(api_token=other["api_token"], base_url=server.base_url, max_retries=0).realtime_kit
    ours = {"account_id": server.account_id, "app_id": server.app_id}
    mixed = {"account_id": other["account_id"], "app_id": server.app_id}
    for kwargs in (ours, mixed):
        with pytest.raises(cloudflare.NotFoundError) as err:
            intruder.meetings.get_meeting_by_id(m.id, **kwargs)
        assert "private" not in str(err.value.body)
        with pytest.raises(cloudflare.NotFoundError):
            intruder.meetings.get(kwargs["app_id"], account_id=kwargs["account_id"])
        with pytest.raises(cloudflare.NotFoundError):
            intruder.meetings.update_meeting_by_id(m.id, **kwargs, title="pwned")
        with pytest.raises(cloudflare.NotFoundError):
            intruder.webhooks.get_webhooks(kwargs["app_id"], account_id=kwargs["account_id"])
        with pytest.raises(cloudflare.NotFoundError):
            intruder.sessions.get_sessions(kwargs["app_id"], account_id=kwargs["account_id"])
    with pytest.raises(cloudflare.NotFoundError):
        intruder.apps.get(account_id=server.account_id)
    # Their own meeting id under their own app does not exist either.
    with pytest.raises(cloudflare.NotFoundError):
        intruder.meetings.get_meeting_by_id(m.id, account_id=other["account_id"], app_id=other["app_id"])
    assert cf.realtime_kit.meetings.get_meeting_by_id(m.id, **ours).data.title == "private"
