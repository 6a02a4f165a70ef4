"""``realtime_kit.analytics.get_org_analytics`` through the real Cloudflare SDK, on SQLite and PostgreSQL: day-wise
sessions, participant minutes, recordings, recorded minutes and bytes from the database; another app's
figures never leak in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import cloudflare
import pytest
from cloudflare import Cloudflare
from tests.conftest import Server
from tests.integration.api.test_realtimekit_sdk import run_lifecycle

from roomtape.db import lifecycle
from roomtape.db.models import Meeting, Participant, Recording


def _seed(server: Server, app_id: str) -> None:
    """One session today with stays of 30 and 12 minutes; a recording today and one yesterday."""

    async def go(db):  # type: ignore[no-untyped-def]
        meeting = Meeting(app_id=app_id, title="analytics", status="ACTIVE")
        db.add(meeting)
        await db.flush()
        people = [
            Participant(meeting_id=meeting.id, custom_participant_id=f"p{i}", preset_name="group_call_host")
            for i in range(2)
        ]
        db.add_all(people)
        await db.flush()
        for person, minutes in zip(people, (30, 12), strict=True):
            _, stay = await lifecycle.participant_joined(db, meeting, person)
            await lifecycle.participant_left(db, stay.id, now=stay.joined_at + timedelta(minutes=minutes))
        now = datetime.now(UTC)
        for when, seconds, size in ((now, 600, 1_000_000), (now - timedelta(days=1), 150, 2_500)):
            db.add(
                Recording(
                    app_id=app_id,
                    meeting_id=meeting.id,
                    status="UPLOADED",
                    invoked_time=when,
                    recording_duration=seconds,
                    file_size=size,
                )
            )

    run_lifecycle(server, go)


def test_daywise_sessions_and_recordings(server: Server) -> None:
    other = server.new_app("analytics")
    _seed(server, other["app_id"])
    kit = Cloudflare(api_token=other["api_token"], base_url=server.base_url, max_retries=0).realtime_kit
    today = datetime.now(UTC).date()
    got = kit.analytics.get_org_analytics(
        other["app_id"],
        account_id=other["account_id"],
        start_date=(today - timedelta(days=7)).isoformat(),
        end_date=today.isoformat(),
    )
    assert got.success is True and got.data is not None
    sessions, recordings = got.data.session_stats, got.data.recording_stats
    assert sessions is not None and recordings is not None
    assert sessions.sessions_count == 1 and sessions.sessions_minutes_consumed == pytest.approx(42.0)
    assert [(d.day, d.total_sessions, d.total_session_minutes) for d in sessions.day_stats or []] == [
        (today.isoformat(), 1, pytest.approx(42.0))
    ]
    yesterday = (today - timedelta(days=1)).isoformat()
    assert recordings.recording_count == 2 and recordings.recording_minutes_consumed == pytest.approx(12.5)
    assert [(d.day, d.total_recordings, d.total_recording_minutes) for d in recordings.day_stats or []] == [
        (yesterday, 1, 2),  # 150 s, rounded to whole minutes as the SDK's int field wants
        (today.isoformat(), 1, 10),
    ]
    raw = kit.analytics.with_raw_response.get_org_analytics(other["app_id"], account_id=other["account_id"]).json()
    assert raw["data"]["recording_stats"]["recording_bytes"] == 1_002_500
    assert raw["data"]["session_stats"]["day_stats"][0]["total_participants"] == 2

    # Only yesterday: the session (today) is out, one recording in.
    only = kit.analytics.get_org_analytics(
        other["app_id"], account_id=other["account_id"], start_date=yesterday, end_date=yesterday
    ).data
    assert only is not None and only.session_stats and only.session_stats.sessions_count == 0
    assert only.recording_stats and only.recording_stats.recording_count == 1

    # The fixture's own app sees none of it, and its token cannot read the other app.
    ours = Cloudflare(api_token=server.api_token, base_url=server.base_url, max_retries=0).realtime_kit
    mine = ours.analytics.with_raw_response.get_org_analytics(server.app_id, account_id=server.account_id).json()
    assert (
        mine["data"]["recording_stats"]["recording_bytes"] == 0 and mine["data"]["session_stats"]["sessions_count"] == 0
    )
    with pytest.raises(cloudflare.NotFoundError):
        ours.analytics.get_org_analytics(other["app_id"], account_id=other["account_id"])
    with pytest.raises(cloudflare.NotFoundError):
        ours.analytics.get_org_analytics(other["app_id"], account_id=server.account_id)
    with pytest.raises(cloudflare.BadRequestError):
        kit.analytics.get_org_analytics(other["app_id"], account_id=other["account_id"], start_date="yesterday")
