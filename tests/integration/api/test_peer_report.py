"""``sessions.get_participant_data_from_peer_id`` through the real Cloudflare SDK: a real aiortc participant
publishes audio and video; its peer report counts what the media plane received, live and after the leave."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from cloudflare import AsyncCloudflare, NotFoundError
from tests.integration.media.roomtape_media_peers import CounterVideoTrack, ToneAudioTrack
from tests.integration.recording.recording_server import LiveServer, live_server, wait_for

from roomtape.agents import RoomClient
from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import SessionParticipant

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path) as server:
        yield server


async def test_peer_report_counts_published_media_live_and_after_leaving(srv: LiveServer) -> None:
    api = f"/accounts/{srv.account_id}/realtime/kit/{srv.app_id}"
    auth = {"Authorization": f"Bearer {srv.api_token}"}
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
        meeting = (await http.post(f"{api}/meetings", json={"title": "report"}, headers=auth)).json()["data"]["id"]
        r = await http.post(
            f"{api}/meetings/{meeting}/participants",
            json={"name": "alice", "custom_participant_id": "alice", "preset_name": "group_call_host"},
            headers=auth,
        )
        token = r.json()["data"]["token"]
    cf = AsyncCloudflare(api_token=srv.api_token, base_url=srv.base_url, max_retries=0)
    ids = {"account_id": srv.account_id, "app_id": srv.app_id}
    client = RoomClient(srv.base_url, token)
    await client.join()
    await client.publish(audio=ToneAudioTrack(440.0), video=CounterVideoTrack())
    try:
        await wait_for(lambda: srv.rows(SessionParticipant), 10, "the stay")
        [stay] = await srv.rows(SessionParticipant)
        await asyncio.sleep(3.0)
        live = await cf.realtime_kit.sessions.get_participant_data_from_peer_id(stay.id, **ids, filters="quality_stats")
        assert live.data and live.data.participant and live.data.participant.peer_report
        quality = live.data.participant.peer_report.quality
        assert quality is not None and quality.audio_producer and quality.video_producer
        audio, video = quality.audio_producer[0], quality.video_producer[0]
        assert (audio.packets_sent or 0) > 80 and (audio.bytes_sent or 0) > 1000  # ~50 Opus packets/s for 3 s
        assert (video.packets_sent or 0) > 40 and (video.frames_encoded or 0) > 40 and (video.bytes_sent or 0) > 10_000
        assert video.key_frames_encoded and video.key_frames_encoded >= 1 and video.pli_count is not None
        assert quality.audio_producer_cumulative and quality.audio_producer_cumulative.packet_loss
        assert live.data.participant.left_at is None
    finally:
        await client.leave()

    async def left() -> bool:
        return all(s.left_at is not None and s.media_stats for s in await srv.rows(SessionParticipant))

    await wait_for(left, 10, "the leave with its media stats")
    after = await cf.realtime_kit.sessions.get_participant_data_from_peer_id(stay.id, **ids, filters="events")
    assert after.data and after.data.participant
    participant = after.data.participant
    assert participant.left_at is not None and participant.custom_participant_id == "alice"
    assert [e.event_name for e in participant.peer_events or []] == ["PEER_JOINING", "PEER_LEAVING"]
    kept = await cf.realtime_kit.sessions.get_participant_data_from_peer_id(stay.id, **ids, filters="quality_stats")
    assert kept.data and kept.data.participant and kept.data.participant.peer_report
    kept_quality = kept.data.participant.peer_report.quality
    assert kept_quality and kept_quality.video_producer
    assert (kept_quality.video_producer[0].frames_encoded or 0) >= (video.frames_encoded or 0)

    # Another account, and a peer that does not exist: 404, no data.
    async with srv.ctx.sessions() as db:
        stranger = await create_app_with_account(db, "stranger")
        await db.commit()
    other = AsyncCloudflare(api_token=stranger.api_token, base_url=srv.base_url, max_retries=0)
    with pytest.raises(NotFoundError):
        await other.realtime_kit.sessions.get_participant_data_from_peer_id(
            stay.id, account_id=stranger.account_id, app_id=stranger.app_id, filters="quality_stats"
        )
    with pytest.raises(NotFoundError):
        await cf.realtime_kit.sessions.get_participant_data_from_peer_id("no-such-peer", **ids, filters="events")
    await cf.close()
    await other.close()
