"""Bad input to the signaling endpoints gets a clear answer: 400/401/403/409 over WHIP, an error message and
a close code over the WebSocket."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from aiortc import RTCPeerConnection
from tests.conftest import Server
from tests.integration.media.roomtape_media_peers import CounterVideoTrack, ToneAudioTrack, no_ice_servers
from tests.integration.signaling.signaling_helpers import Api, run_signaling_server
from websockets.asyncio.client import connect

from roomtape.agents import JoinError, RoomClient, SignalingError
from roomtape.api.routers.signaling import parse_track_kinds
from roomtape.domain.tokens import sign_participant_token
from roomtape.errors import InvalidInput

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("errors"))


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


async def real_offer() -> str:
    pc = RTCPeerConnection(no_ice_servers())
    pc.addTransceiver(ToneAudioTrack(440.0), direction="sendonly")
    pc.addTransceiver(CounterVideoTrack(), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return str(sdp)


def post(api: Api, meeting: str, token: str | None, sdp: str, content_type: str = "application/sdp") -> httpx.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(api.whip_url(meeting), content=sdp, headers=headers, timeout=10)


def message(response: httpx.Response) -> str:
    return str(response.json()["error"]["message"])


async def test_whip_refuses_bad_sdp_and_codecs_it_cannot_forward(api: Api) -> None:
    meeting = api.meeting()
    _, token = api.participant(meeting, "obs")
    offer = await real_offer()

    garbage = post(api, meeting, token, "hello, I am not SDP")
    assert garbage.status_code == 400 and "malformed SDP" in message(garbage)
    no_media = post(api, meeting, token, "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
    assert no_media.status_code == 400 and "no audio or video" in message(no_media)

    h265_only = offer.replace("VP8/90000", "H265/90000").replace("H264/90000", "H265/90000")
    refused = post(api, meeting, token, h265_only)
    assert refused.status_code == 400
    assert message(refused).startswith("no codec roomtape can forward: video section")
    assert "H265" in message(refused)
    g722_only = (
        offer.replace("opus/48000/2", "G722/8000").replace("PCMU/8000", "G722/8000").replace("PCMA/8000", "G722/8000")
    )
    refused = post(api, meeting, token, g722_only)
    assert refused.status_code == 400 and "no codec roomtape can forward: audio section" in message(refused)

    assert post(api, meeting, token, offer, content_type="text/plain").status_code == 415
    # Nothing above joined anyone: no session was started.
    assert api.sessions(meeting) == []

    async with httpx.AsyncClient() as http:
        options = await http.options(api.whip_url(meeting))
        assert options.status_code == 204 and options.headers["Accept-Post"] == "application/sdp"
        unknown = await http.delete(api.whip_url(meeting) + "/nope", headers={"Authorization": f"Bearer {token}"})
        assert unknown.status_code == 404


async def test_tokens_expired_forged_revoked_or_for_another_meeting(api: Api, server: Server) -> None:
    meeting = api.meeting()
    other_meeting = api.meeting()
    participant_id, token = api.participant(meeting, "alice")
    _, other_token = api.participant(other_meeting, "mallory")
    offer = await real_offer()
    secret = (server.data_dir / "secret.key").read_text().strip()
    expired = sign_participant_token(
        secret,
        app_id=server.app_id,
        meeting_id=meeting,
        participant_id=participant_id,
        version=0,
        ttl_secs=60,
        now=time.time() - 3600,
    )

    for bad, status, text in (
        (None, 401, "token is required"),
        ("not-a-token", 401, "not valid"),
        (expired, 401, "expired"),
        (other_token, 403, "another meeting"),
    ):
        response = post(api, meeting, bad, offer)
        assert response.status_code == status, response.text
        assert text in message(response)
        if bad is not None:
            with pytest.raises(JoinError) as refused:
                await RoomClient(server.base_url, bad, meeting_id=meeting).join()
            assert refused.value.code == 4000 + status
            assert text in str(refused.value)

    # A refreshed token revokes the old one.
    api._call("POST", f"/meetings/{meeting}/participants/{participant_id}/token")
    response = post(api, meeting, token, offer)
    assert response.status_code == 401 and "revoked" in message(response)


async def test_inactive_meeting_refuses_joins(api: Api, server: Server) -> None:
    meeting = api.meeting()
    _, token = api.participant(meeting, "alice")
    api.patch_meeting(meeting, status="INACTIVE")
    response = post(api, meeting, token, await real_offer())
    assert response.status_code == 409 and "INACTIVE" in message(response)
    with pytest.raises(JoinError) as refused:
        await RoomClient(server.base_url, token).join()
    assert refused.value.code == 4409 and "INACTIVE" in str(refused.value)
    assert api.sessions(meeting) == []


async def test_websocket_reports_bad_messages_and_stays_open(api: Api, server: Server) -> None:
    meeting = api.meeting()
    _, token = api.participant(meeting, "alice")
    url = server.base_url.replace("http://", "ws://") + f"/v1/meetings/{meeting}/ws?token={token}"
    async with connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        for raw, text in (
            ("{not json", "Expecting"),
            (json.dumps({"type": "dance"}), "unknown message type"),
            (json.dumps({"type": "publish", "sdp": "garbage"}), "malformed SDP"),
            (json.dumps({"type": "answer", "sdp": "v=0"}), "no offer is waiting"),
            (json.dumps({"type": "mute", "track_id": "TR_x", "muted": "yes"}), "true or false"),
            (json.dumps({"type": "mute", "track_id": "TR_x", "muted": True}), "no track"),
        ):
            await ws.send(raw)
            reply = json.loads(await ws.recv())
            assert reply["type"] == "error" and text in reply["message"], (raw, reply)
        await ws.send(json.dumps({"type": "leave"}))
        await ws.wait_closed()
        assert ws.close_code == 1000

    # The client surfaces a refused publish as an exception.
    client = RoomClient(server.base_url, token)
    await client.join()
    try:
        pc_offer = (await real_offer()).replace("VP8/90000", "H265/90000").replace("H264/90000", "H265/90000")
        await client._send({"type": "publish", "sdp": pc_offer, "kinds": {}})
        event = await client.wait_for("error")
        assert event.message is not None and event.message.startswith("no codec roomtape can forward")
        with pytest.raises(SignalingError, match="no published"):
            await client.set_muted("video", True)
    finally:
        await client.leave()


def test_track_kind_labels() -> None:
    assert parse_track_kinds("1:screen_video, 2:screen_audio") == {"1": "screen_video", "2": "screen_audio"}
    assert parse_track_kinds(None) == {}
    with pytest.raises(InvalidInput, match="mid:kind"):
        parse_track_kinds("1:webcam")
