"""LiveKit Agents' session upload (``POST /observability/recordings/v0``): parsing its parts.

``livekit-agents`` (``telemetry/traces.py``, ``_upload_session_report``) posts, when
``LIVEKIT_OBSERVABILITY_URL`` is set, a multipart form with:

- ``header``: a ``livekit.MetricsRecordingHeader`` protobuf (``livekit_metrics.proto``): ``room_id = 1``
  (string), ``duration = 3`` (uint64 ms), ``start_time = 4`` (``google.protobuf.Timestamp``: seconds = 1,
  nanos = 2), ``room_tags = 5`` (map<string, string>). Newer versions add fields (job id, flags) whose
  numbers are not in the published schema we checked; unknown fields are skipped, as protobuf does.
- ``chat_history``: ``ChatContext.to_dict(exclude_timestamp=False)`` JSON: ``{"items": [...]}``.
- ``audio``: the session's OGG/Opus recording (user and agent), when audio recording is on.

The header is decoded here with a small wire-format reader rather than generated stubs, so roomtape needs no
LiveKit package. A JSON header (``{"room_id", "start_time" (Unix seconds), "duration" (ms)}``) is accepted
too, for uploaders that cannot build protobuf.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from roomtape.errors import InvalidInput
from roomtape.transcripts.events import ConversationItemAdded

OGG_MAGIC = b"OggS"


@dataclass(frozen=True, slots=True)
class RecordingHeader:
    """What ``MetricsRecordingHeader`` says about the upload."""

    room_id: str = ""
    duration_ms: int = 0
    start_time: float | None = None
    """When the audio recording started, Unix seconds (agent clock); None when not set."""
    room_tags: dict[str, str] = field(default_factory=dict)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise InvalidInput("header: truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise InvalidInput("header: varint too long")


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: varints as ints, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise InvalidInput("header: field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise InvalidInput("header: truncated field")
            out.append((number, data[pos : pos + length]))
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise InvalidInput(f"header: unsupported wire type {wire}")
        if pos > len(data):
            raise InvalidInput("header: truncated field")
    return out


def _text(value: int | bytes, what: str) -> str:
    if not isinstance(value, bytes):
        raise InvalidInput(f"header: {what} is not a string")
    try:
        return value.decode()
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"header: {what} is not UTF-8") from exc


def parse_header(data: bytes) -> RecordingHeader:
    """Decode the ``header`` part: protobuf ``MetricsRecordingHeader``, or the same fields as JSON.

    Raises:
        InvalidInput: Neither valid protobuf nor a JSON object.
    """
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        return _json_header(stripped)
    room_id, duration, start, tags = "", 0, None, {}
    for number, value in _fields(data):
        if number == 1:
            room_id = _text(value, "room_id")
        elif number == 3 and isinstance(value, int):
            duration = value
        elif number == 4 and isinstance(value, bytes):
            parts = dict(_fields(value))
            seconds, nanos = parts.get(1, 0), parts.get(2, 0)
            if isinstance(seconds, int) and isinstance(nanos, int):
                seconds = seconds - (1 << 64) if seconds >= 1 << 63 else seconds
                start = seconds + nanos / 1e9
        elif number == 5 and isinstance(value, bytes):
            entry = dict(_fields(value))
            tags[_text(entry.get(1, b""), "room tag")] = _text(entry.get(2, b""), "room tag")
    return RecordingHeader(room_id=room_id, duration_ms=duration, start_time=start or None, room_tags=tags)


def _json_header(data: bytes) -> RecordingHeader:
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("header: not valid JSON") from exc
    if not isinstance(raw, dict):
        raise InvalidInput("header: not a JSON object")
    try:
        start = raw.get("start_time")
        tags = raw.get("room_tags") or {}
        return RecordingHeader(
            room_id=str(raw.get("room_id") or ""),
            duration_ms=int(raw.get("duration") or 0),
            start_time=float(start) if start is not None else None,
            room_tags={str(k): str(v) for k, v in dict(tags).items()},
        )
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"header: {exc}") from exc


def parse_chat_history(data: bytes) -> list[ConversationItemAdded]:
    """The text messages of a ``ChatContext.to_dict()`` upload, as ``conversation_item_added`` events.

    Function calls, handoffs and other non-message items, and messages with no text, are skipped.

    Raises:
        InvalidInput: Not JSON, not ``{"items": [...]}``, or a message that does not validate.
    """
    try:
        raw: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("chat_history: not valid JSON") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("items"), list):
        raise InvalidInput('chat_history: expected {"items": [...]}')
    events = []
    for n, item in enumerate(raw["items"]):
        if not isinstance(item, dict):
            raise InvalidInput(f"chat_history: item {n} is not an object")
        if item.get("type", "message") != "message":
            continue
        try:
            event = ConversationItemAdded.model_validate(
                {"type": "conversation_item_added", "item": item, "clock": "agent"}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidInput(f"chat_history: item {n}: {where}: {first.get('msg')}") from exc
        if any(t.strip() for t in event.texts()):
            events.append(event)
    return events


def check_ogg(data: bytes) -> None:
    """Raise ``InvalidInput`` unless ``data`` starts like an Ogg stream."""
    if not data.startswith(OGG_MAGIC):
        raise InvalidInput("audio: not an Ogg file")
