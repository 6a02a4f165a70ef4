"""Transcript events as agents send them, and how each becomes a :class:`TranscriptItem`.

Two events, named and shaped after LiveKit Agents' session events:

- ``conversation_item_added``: a message joined the conversation. Either LiveKit's shape, the message under
  ``item`` (``{"type": "conversation_item_added", "item": {"id", "role", "content", "interrupted", ...}}``),
  or flat (``role`` and ``text``/``content`` beside ``type``).
- ``user_input_transcribed``: speech-to-text output for the user: ``transcript``, ``is_final``,
  ``speaker_id``, ``language``. Interim results (``is_final: false``) replace each other until the final one.

Both may carry ``start``/``end`` (and word timings) measured on ``clock``: ``session`` (seconds since the
session started, the default), ``epoch`` (server Unix time) or ``agent`` (the agent's Unix time, corrected by
the clock offset measured when it joined). Without them, LiveKit's ``metrics.started_speaking_at`` and
``stopped_speaking_at`` (agent Unix time) are used.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from roomtape.errors import InvalidInput
from roomtape.transcripts.clock import ClockName, ClockOffset, to_epoch, to_session
from roomtape.transcripts.model import Channel, Role, Source, TranscriptItem, Word

MAX_TEXT = 20_000
"""Characters of text in one item."""
MAX_WORDS = 5_000
MAX_EVENTS = 500
"""Events in one request."""

ShortId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Label = Annotated[str, StringConstraints(min_length=1, max_length=255)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]


class WordIn(BaseModel):
    """A word and when it was spoken, on the event's ``clock``."""

    model_config = ConfigDict(extra="ignore")

    word: Annotated[str, StringConstraints(max_length=256)]
    start: Seconds
    end: Seconds
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None


class MetricsIn(BaseModel):
    """LiveKit's ``MetricsReport``: only the speaking times are used (agent Unix seconds)."""

    model_config = ConfigDict(extra="allow")

    started_speaking_at: Seconds | None = None
    stopped_speaking_at: Seconds | None = None


class _Timed(BaseModel):
    """Who spoke and when: fields both events share."""

    model_config = ConfigDict(extra="ignore")

    id: ShortId | None = None
    """The item's id; resending an id replaces that item. Made up by roomtape when absent."""
    participant_id: Label | None = None
    speaker_id: Label | None = None
    channel: Channel | None = None
    language: Annotated[str, StringConstraints(max_length=35)] | None = None
    start: Seconds | None = None
    end: Seconds | None = None
    clock: ClockName = "session"
    """What ``start``, ``end`` and word times are measured on."""
    words: Annotated[list[WordIn], Field(max_length=MAX_WORDS)] = []
    created_at: Seconds | None = None
    """When the event was made, agent Unix seconds (LiveKit's ``created_at``); defaults to arrival."""


class ConversationItemAdded(_Timed):
    """A message joined the conversation (LiveKit's ``ConversationItemAddedEvent``)."""

    type: Literal["conversation_item_added"]
    role: Role
    content: Annotated[list[Any], Field(max_length=100)] = []
    """Text parts; non-text parts (images, audio) are dropped."""
    text: Text | None = None
    """The message as one string, instead of ``content``."""
    interrupted: bool = False
    spoken_text: Text | None = None
    """When interrupted: the part actually spoken before the cut."""
    metrics: MetricsIn | None = None
    transcript_confidence: Annotated[float, Field(ge=0, le=1)] | None = None
    extra: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap_item(cls, data: Any) -> Any:
        """Accept LiveKit's shape: the message under ``item``, its fields taking precedence."""
        if isinstance(data, dict) and isinstance(data.get("item"), dict):
            item = {k: v for k, v in data["item"].items() if k != "type"}
            data = {**{k: v for k, v in data.items() if k != "item"}, **item}
        return data

    def texts(self) -> tuple[str, ...]:
        """The text parts of the message."""
        if self.text is not None:
            return (self.text,)
        return tuple(part for part in self.content if isinstance(part, str))


class UserInputTranscribed(_Timed):
    """Speech-to-text output for the user (LiveKit's ``UserInputTranscribedEvent``)."""

    type: Literal["user_input_transcribed"]
    transcript: Text
    is_final: bool = True
    utterance_id: ShortId | None = None
    """Groups interim results of one utterance; absent means "this speaker's current utterance"."""
    confidence: Annotated[float, Field(ge=0, le=1)] | None = None


TranscriptEvent = Annotated[ConversationItemAdded | UserInputTranscribed, Field(discriminator="type")]


class TranscriptBatch(BaseModel):
    """Several events, with the sender's clock offset for times on the ``agent`` clock."""

    model_config = ConfigDict(extra="forbid")

    events: Annotated[list[TranscriptEvent], Field(min_length=1, max_length=MAX_EVENTS)]
    clock_offset: Seconds = 0.0
    """agent clock - server clock, in seconds, as measured by the sender."""


def new_item_id() -> str:
    """An item id in LiveKit's style."""
    return "item_" + uuid.uuid4().hex[:12]


def _check_span(start: float | None, end: float | None, what: str) -> None:
    if start is not None and end is not None and end < start:
        raise InvalidInput(f"{what}: end ({end}) is before start ({start})")


def to_item(
    event: ConversationItemAdded | UserInputTranscribed,
    *,
    session_id: str,
    session_start_epoch: float,
    offset: ClockOffset,
    source: Source,
    now: float,
) -> TranscriptItem:
    """The transcript item an event describes, with its times on the server's and the session's clocks.

    Raises:
        InvalidInput: The item has no text, or a span ends before it starts.
    """
    label = f"item {event.id}" if event.id else event.type

    def epoch(value: float | None) -> float | None:
        return None if value is None else to_epoch(value, event.clock, session_start_epoch, offset)

    def session_clock(value: float | None) -> float | None:
        return None if value is None else to_session(value, session_start_epoch)

    _check_span(event.start, event.end, label)
    start_epoch, end_epoch = epoch(event.start), epoch(event.end)
    if isinstance(event, ConversationItemAdded) and event.metrics is not None:
        if start_epoch is None and event.metrics.started_speaking_at is not None:
            start_epoch = offset.to_server(event.metrics.started_speaking_at)
        if end_epoch is None and event.metrics.stopped_speaking_at is not None:
            end_epoch = offset.to_server(event.metrics.stopped_speaking_at)
        _check_span(start_epoch, end_epoch, f"{label} metrics")
    words = []
    for w in event.words:
        _check_span(w.start, w.end, f"{label} word {w.word!r}")
        ws = to_epoch(w.start, event.clock, session_start_epoch, offset)
        we = to_epoch(w.end, event.clock, session_start_epoch, offset)
        words.append(
            Word(w.word, to_session(ws, session_start_epoch), to_session(we, session_start_epoch), w.confidence)
        )
    created = offset.to_server(event.created_at) if event.created_at is not None else now
    common: dict[str, Any] = {
        "session_id": session_id,
        "created_at": created,
        "participant_id": event.participant_id,
        "speaker_id": event.speaker_id,
        "channel": event.channel,
        "start": session_clock(start_epoch),
        "end": session_clock(end_epoch),
        "start_epoch": start_epoch,
        "end_epoch": end_epoch,
        "words": tuple(words),
        "language": event.language,
        "source": source,
    }
    if isinstance(event, ConversationItemAdded):
        texts = event.texts()
        if not any(t.strip() for t in texts):
            raise InvalidInput(f"{label}: the message has no text content")
        return TranscriptItem(
            id=event.id or new_item_id(),
            role=event.role,
            content=texts,
            kind="conversation_item_added",
            interrupted=event.interrupted,
            spoken_text=event.spoken_text,
            confidence=event.transcript_confidence,
            extra=dict(event.extra or {}),
            **common,
        )
    if event.is_final and not event.transcript.strip():
        raise InvalidInput(f"{label}: the transcript is empty")
    return TranscriptItem(
        id=event.id or new_item_id(),
        role="user",
        content=(event.transcript,),
        kind="user_input_transcribed",
        is_final=event.is_final,
        utterance_id=event.utterance_id,
        confidence=event.confidence,
        **common,
    )
