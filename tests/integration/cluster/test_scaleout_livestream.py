"""Scale-out: a livestream started, played and stopped through the api node runs on the room's media node.

An api node and two media nodes (PostgreSQL, Redis); one publisher joins through the api node and is placed
on a media node. Through the api node's URL only (the Cloudflare SDK's base URL): start → the media node
holding the room streams it (the api node has no room: there it would answer 409), the signed playback URL
points at the api node, the playlist and a segment come through it (forwarded to the room's node), and the
stop reaches the node streaming it → IDLE.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
from cloudflare import AsyncCloudflare
from tests.integration.cluster.deployment import deployment
from tests.integration.cluster.test_scaleout import _join
from tests.integration.recording.recording_server import wait_for

pytestmark = pytest.mark.timeout(300)


async def test_livestream_through_the_api_node_runs_on_the_rooms_media_node(tmp_path: Path) -> None:
    async with deployment(tmp_path, media_nodes=2, workers=0) as dep:
        ids = {"account_id": dep.account_id, "app_id": dep.app_id}
        async with (
            httpx.AsyncClient(headers=dep.headers, timeout=30) as http,
            AsyncCloudflare(api_token=dep.api_token, base_url=dep.base, max_retries=0) as cf,
        ):
            meeting = (await cf.realtime_kit.meetings.create(dep.app_id, account_id=dep.account_id)).data
            assert meeting is not None and meeting.id
            client = await _join(dep, http, meeting.id, "alice", 440.0)
            try:
                holder = dep.node_ids().get(dep.node_of_room(meeting.id) or "")
                assert holder is not None and holder.startswith("media-"), dep.logs()
                started = await cf.realtime_kit.livestreams.start_livestreaming_a_meeting(
                    meeting.id, **ids, video_config={"width": 320, "height": 180}
                )
                assert started.data is not None and started.data.status == "INVOKED"
                playback = str(started.data.playback_url)
                assert playback.startswith(f"{dep.base}/v1/livestreams/{started.data.id}/hls/")

                async def live() -> bool:
                    got = await cf.realtime_kit.livestreams.get_meeting_active_livestreams(meeting.id, **ids)
                    return got.data is not None and got.data.status == "LIVE"

                await wait_for(live, 60, "LIVE")
                deadline = time.monotonic() + 30
                while not re.search(r"^seg\d+\.ts$", (listing := await http.get(playback)).text, re.MULTILINE):
                    assert listing.status_code == 200, listing.text
                    assert time.monotonic() < deadline, listing.text
                    await asyncio.sleep(0.5)
                name = re.findall(r"^(seg\d+\.ts)$", listing.text, re.MULTILINE)[-1]
                segment = await http.get(playback.rsplit("/", 1)[0] + "/" + name)
                assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp2t"
                assert segment.content[:1] == b"\x47"  # MPEG-TS sync byte

                stopped = await cf.realtime_kit.livestreams.stop_livestreaming_a_meeting(meeting.id, **ids)
                assert stopped.data is not None and stopped.data.message == "livestream stopped"
                one = await cf.realtime_kit.livestreams.get_livestream_session_for_livestream_id(
                    str(started.data.id), **ids
                )
                assert one.data is not None and one.data.livestream is not None
                assert one.data.livestream.status == "IDLE"
            finally:
                await client.leave()
