from __future__ import annotations

import pytest

from roomtape.media.events import EventEmitter
from roomtape.media.room import ParticipantNotFoundError, Room, RoomError, RoomEvent
from roomtape.media.sdp import parse_media_sections

OFFER = """v=0\r
o=- 1 1 IN IP4 0.0.0.0\r
s=-\r
t=0 0\r
m=audio 9 UDP/TLS/RTP/SAVPF 111 0\r
a=mid:0\r
a=sendonly\r
a=rtpmap:111 opus/48000/2\r
a=rtpmap:0 PCMU/8000\r
m=video 9 UDP/TLS/RTP/SAVPF 102 96 97\r
a=mid:1\r
a=recvonly\r
a=rtpmap:96 VP8/90000\r
a=rtpmap:97 rtx/90000\r
a=rtpmap:102 H264/90000\r
m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r
a=mid:2\r
"""


def test_media_sections_in_order_with_codecs_in_payload_order() -> None:
    audio, video, data = parse_media_sections(OFFER)
    assert (audio.kind, audio.mid, audio.direction, audio.codecs) == (
        "audio",
        "0",
        "sendonly",
        ["audio/opus", "audio/PCMU"],
    )
    assert (video.mid, video.direction, video.codecs) == ("1", "recvonly", ["video/H264", "video/VP8", "video/rtx"])
    assert (data.kind, data.mid, data.codecs) == ("application", "2", [])


def test_emitter_isolates_failing_callbacks() -> None:
    emitter: EventEmitter[str, int] = EventEmitter()
    seen: list[int] = []

    def boom(_: int) -> None:
        raise RuntimeError

    emitter.on("x", boom)
    emitter.on("x", seen.append)
    emitter.emit("x", 1)
    emitter.off("x", seen.append)
    emitter.emit("x", 2)
    assert seen == [1]


async def test_join_leave_and_mute_errors_emit_typed_events() -> None:
    room = Room("RM_1")
    events: list[RoomEvent] = []
    room.events.on("participant_joined", events.append)
    room.events.on("participant_left", events.append)
    alice = room.join("alice", name="Alice")
    assert room.join("alice") is alice  # joining twice is harmless
    with pytest.raises(ParticipantNotFoundError):
        room.set_muted("bob", "TR_x", True)
    with pytest.raises(RoomError, match="no track"):
        room.set_muted("alice", "TR_x", True)
    with pytest.raises(RoomError, match="no such tracks"):
        await room.subscribe("alice", OFFER, track_ids=["TR_x"])
    await room.leave("alice")
    await room.leave("alice")
    assert [(e.name, e.participant_id) for e in events] == [
        ("participant_joined", "alice"),
        ("participant_left", "alice"),
    ]
    assert room.participants == {}
