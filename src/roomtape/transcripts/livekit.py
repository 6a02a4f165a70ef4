"""LiveKit Agents' session upload (``POST /observability/recordings/v0``): parsing its parts.

``livekit-agents`` (``telemetry/traces.py``, ``_upload_session_report``) posts, when
``LIVEKIT_OBSERVABILITY_URL`` is set, a multipart form with:

- ``header``: a ``livekit.MetricsRecordingHeader`` protobuf (``livekit_metrics.proto``, as
  ``livekit-protocol`` 1.1 ships it): ``room_id = 1`` (string, the room's sid), ``duration = 3`` (uint64 ms),
  ``start_time = 4`` (``google.protobuf.Timestamp``: seconds = 1, nanos = 2; when the audio recording
  started), ``room_tags = 5`` (map<string, string>), ``room_name = 6``, ``room_start_time = 7``
  (Timestamp), ``job_id = 8``, ``simulated = 9`` and ``redaction_enabled = 10`` (bool), ``session_summary =
  11`` (the session report as JSON, without chat history and events). Unknown fields are skipped, as
  protobuf does.
- ``chat_history``: ``ChatContext.to_dict(exclude_timestamp=False)`` JSON: ``{"items": [...]}``.
- ``audio``: the session's OGG/Opus recording, stereo: the user on the left (channel 0), the agent on the
  right (channel 1), as LiveKit's ``RecorderIO`` writes it; when audio recording is on.

The header is decoded here with a small wire-format reader rather than generated stubs, so roomtape needs no
LiveKit package. A JSON header (``{"room_id", "start_time" (Unix seconds), "duration" (ms)}``) is accepted
too, for uploaders that cannot build protobuf.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any

import av
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
    room_name: str = ""
    room_start_time: float | None = None
    job_id: str = ""
    simulated: bool = False
    redaction_enabled: bool = False
    session_summary: dict[str, Any] = field(default_factory=dict)
    """The session report's summary (agent name, SDK version, options, ...); empty when absent or not JSON."""


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
    if not data:
        raise InvalidInput("header: empty")
    fields: dict[str, Any] = {"room_tags": {}}
    for number, value in _fields(data):
        if number == 1:
            fields["room_id"] = _text(value, "room_id")
        elif number == 3 and isinstance(value, int):
            fields["duration_ms"] = value
        elif number in (4, 7) and isinstance(value, bytes):
            fields["start_time" if number == 4 else "room_start_time"] = _timestamp(value)
        elif number == 5 and isinstance(value, bytes):
            entry = dict(_fields(value))
            fields["room_tags"][_text(entry.get(1, b""), "room tag")] = _text(entry.get(2, b""), "room tag")
        elif number == 6:
            fields["room_name"] = _text(value, "room_name")
        elif number == 8:
            fields["job_id"] = _text(value, "job_id")
        elif number in (9, 10) and isinstance(value, int):
            fields["simulated" if number == 9 else "redaction_enabled"] = bool(value)
        elif number == 11:
            fields["session_summary"] = _summary(_text(value, "session_summary"))
    return RecordingHeader(**fields)


def _timestamp(data: bytes) -> float | None:
    """A ``google.protobuf.Timestamp`` as Unix seconds; None for the zero timestamp (not set)."""
    parts = dict(_fields(data))
    seconds, nanos = parts.get(1, 0), parts.get(2, 0)
    if not isinstance(seconds, int) or not isinstance(nanos, int):
        raise InvalidInput("header: malformed timestamp")
    seconds = seconds - (1 << 64) if seconds >= 1 << 63 else seconds
    return (seconds + nanos / 1e9) or None


def _summary(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


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
            room_name=str(raw.get("room_name") or ""),
            job_id=str(raw.get("job_id") or ""),
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
        # LiveKit's recording is stereo: the user on the left, the agent on the right.
        channel = {"user": "left", "assistant": "right"}.get(str(item.get("role")))
        try:
            event = ConversationItemAdded.model_validate(
                {"type": "conversation_item_added", "item": item, "clock": "agent", "channel": channel}
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            raise InvalidInput(f"chat_history: item {n}: {where}: {first.get('msg')}") from exc
        if any(t.strip() for t in event.texts()):
            events.append(event)
    return events


@dataclass(frozen=True, slots=True)
class OggAudio:
    """What :func:`probe_ogg` found in an ``audio`` part."""

    codec: str
    channels: int
    sample_rate: int
    packets: int
    duration: float
    """Seconds, from the last packet's end."""


def probe_ogg(data: bytes) -> OggAudio:
    """Check that ``data`` is an Ogg file with an audio stream, by demuxing every packet (no decoding).

    CPU-bound for long recordings: run it in a worker thread.

    Raises:
        InvalidInput: Not Ogg, no audio stream, no audio packet, or a damaged stream.
    """
    if not data.startswith(OGG_MAGIC):
        raise InvalidInput("audio: not an Ogg file")
    try:
        with av.open(io.BytesIO(data), mode="r", format="ogg") as container:
            if not container.streams.audio:
                raise InvalidInput("audio: the Ogg file has no audio stream")
            stream = container.streams.audio[0]
            packets, end = 0, 0.0
            for packet in container.demux(stream):
                if packet.size == 0:
                    continue
                packets += 1
                if packet.pts is not None and packet.time_base is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
            ctx = stream.codec_context
            found = OggAudio(stream.codec_context.name, ctx.channels, ctx.sample_rate, packets, end)
    except av.error.FFmpegError as exc:
        raise InvalidInput(f"audio: not a readable Ogg file ({exc.strerror or exc})") from exc
    if found.packets == 0:
        raise InvalidInput("audio: the Ogg file has no audio")
    return found
