from __future__ import annotations

import json
import os

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from roomtape.api.routers.transcripts import parse_multipart
from roomtape.errors import InvalidInput
from roomtape.transcripts.livekit import parse_chat_history, parse_header, probe_ogg


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def header_bytes(room_id: str, start_ms: int, duration_ms: int = 0, tags: dict[str, str] | None = None) -> bytes:
    """``MetricsRecordingHeader`` as livekit-agents serializes it (fields from livekit_metrics.proto)."""
    ts = Timestamp()
    ts.FromMilliseconds(start_ms)
    out = _field(1, room_id.encode()) + _field(4, ts.SerializeToString())
    if duration_ms:
        out += _field(3, duration_ms)
    for k, v in (tags or {}).items():
        out += _field(5, _field(1, k.encode()) + _field(2, v.encode()))
    out += _field(8, b"job-1") + _field(9, 1)  # job_id, simulated
    out += _field(40, b"later") + _field(41, 7)  # fields of a later schema: skipped
    return out


def test_protobuf_header_is_decoded_and_unknown_fields_skipped() -> None:
    header = parse_header(header_bytes("RM_abc", 1_700_000_000_250, 61_500, {"team": "blue"}))
    assert header.room_id == "RM_abc" and header.duration_ms == 61_500
    assert header.start_time == pytest.approx(1_700_000_000.25)
    assert header.room_tags == {"team": "blue"}
    assert header.job_id == "job-1" and header.simulated
    assert parse_header(header_bytes("r", 0)).start_time is None


def test_json_header_is_accepted() -> None:
    header = parse_header(json.dumps({"room_id": "r", "start_time": 12.5, "duration": 1000}).encode())
    assert (header.room_id, header.start_time, header.duration_ms) == ("r", 12.5, 1000)


@pytest.mark.parametrize(
    "data", [b"\x0a\x05ab", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", b"{not json", b"\x0f"]
)
def test_malformed_header_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_header(data)


def test_chat_history_keeps_text_messages_only() -> None:
    raw = {
        "items": [
            {"id": "item_1", "type": "message", "role": "system", "content": ["be nice"], "created_at": 1.0},
            {"id": "item_2", "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"id": "item_3", "type": "message", "role": "user", "content": [], "created_at": 2.0},
            {
                "id": "item_4",
                "type": "message",
                "role": "assistant",
                "content": ["hi"],
                "interrupted": True,
                "metrics": {"started_speaking_at": 3.0, "stopped_speaking_at": 4.0},
                "created_at": 3.0,
            },
        ]
    }
    events = parse_chat_history(json.dumps(raw).encode())
    assert [e.id for e in events] == ["item_1", "item_4"]
    assert events[1].interrupted and events[1].clock == "agent"


@pytest.mark.parametrize("data", [b"[]", b"{}", b"nope", b'{"items": [1]}', b'{"items": [{"role": "robot"}]}'])
def test_malformed_chat_history_is_invalid(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_chat_history(data)


def test_audio_that_is_not_ogg_is_invalid() -> None:
    for data in (b"RIFF....", b"OggS\x00rest"):
        with pytest.raises(InvalidInput):
            probe_ogg(data)


def test_multipart_keeps_binary_parts_intact() -> None:
    blob = os.urandom(4096) + b"\r\n--x\r\n\r\n"
    boundary = "bNd4ry"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="header"; filename="header.binpb"\r\n'
            "Content-Type: application/protobuf\r\n\r\n"
        ).encode()
        + b"\x0a\x01r"
        + (
            f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="audio"; filename="recording.ogg"\r\n\r\n'
        ).encode()
        + blob
        + f"\r\n--{boundary}--\r\n".encode()
    )
    parts = parse_multipart(body, f'multipart/form-data; boundary="{boundary}"')
    assert parts == {"header": b"\x0a\x01r", "audio": blob}


@pytest.mark.parametrize(
    ("body", "ctype"),
    [
        (b"x", "application/json"),
        (b"x", "multipart/form-data"),
        (b"--b\r\nno blank line--b--", "multipart/form-data; boundary=b"),
        (b"--b\r\nContent-Type: x\r\n\r\ndata\r\n--b--\r\n", "multipart/form-data; boundary=b"),
        (b"--b\r\nContent-Disposition: form-data; name=a\r\n\r\ndata", "multipart/form-data; boundary=b"),
    ],
)
def test_malformed_multipart_is_invalid(body: bytes, ctype: str) -> None:
    with pytest.raises(InvalidInput):
        parse_multipart(body, ctype)
