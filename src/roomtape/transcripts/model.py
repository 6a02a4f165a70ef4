"""Transcript items: what was said, by whom, when — LiveKit-compatible names where LiveKit has them.

LiveKit's ``ChatMessage`` gives ``id``, ``type``, ``role``, ``content``, ``interrupted``, ``created_at`` and
``metrics.started_speaking_at/stopped_speaking_at``. roomtape adds where the words sit in the recording:
``start``/``end`` in seconds on the session clock (0 = the session's start) and the same instants as Unix
epoch seconds, per-word timings, the speaker, the audio channel and where the item came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Role = Literal["user", "assistant", "system", "developer"]
"""Who speaks: LiveKit's ``ChatRole``."""

ROLES: tuple[Role, ...] = ("user", "assistant", "system", "developer")

Channel = Literal["left", "right", "mono"]
"""Where the speaker is heard in the composite: agent sessions put the user left and the agent right."""

Source = Literal["agent", "livekit", "api", "stt"]
"""How the item reached roomtape: the agent SDK's signaling channel, a LiveKit Agents upload, REST, or
roomtape's own speech-to-text of a recorded audio track."""

ItemKind = Literal["conversation_item_added", "user_input_transcribed"]
"""The event an item was made from."""


@dataclass(frozen=True, slots=True)
class Word:
    """One word with its timing on the session clock (seconds)."""

    word: str
    start: float
    end: float
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class TranscriptItem:
    """One message of a session's transcript.

    Times: ``start``/``end`` are seconds on the session clock; ``start_epoch``/``end_epoch`` are the same
    instants in Unix seconds on the server's clock. Either pair may be ``None`` when nothing says when the
    words were spoken (a typed system message, say).
    """

    id: str
    """Item id: the agent's (LiveKit's ``item_…``) when it sent one, else one made by roomtape."""
    session_id: str
    role: Role
    content: tuple[str, ...]
    """Text parts, in order (LiveKit's ``content`` restricted to text)."""
    created_at: float
    """When the item was created, Unix seconds (LiveKit's ``created_at``)."""
    kind: ItemKind = "conversation_item_added"
    interrupted: bool = False
    """The speaker was cut off (LiveKit sets this on an interrupted agent reply)."""
    spoken_text: str | None = None
    """When interrupted: the part actually heard before the cut (``content`` holds what was planned)."""
    participant_id: str | None = None
    speaker_id: str | None = None
    """Speaker label from diarization (LiveKit's ``speaker_id``)."""
    channel: Channel | None = None
    start: float | None = None
    end: float | None = None
    start_epoch: float | None = None
    end_epoch: float | None = None
    words: tuple[Word, ...] = ()
    language: str | None = None
    is_final: bool = True
    """False for an interim ``user_input_transcribed`` result, replaced by the next one of the utterance."""
    utterance_id: str | None = None
    """Groups the interim results of one utterance; ``None`` means "the speaker's current utterance"."""
    source: Source = "api"
    confidence: float | None = None
    """Transcription confidence (LiveKit's ``transcript_confidence``)."""
    extra: dict[str, object] = field(default_factory=dict)
    """Free-form data the sender attached (LiveKit's ``extra``)."""

    type: Literal["message"] = "message"

    @property
    def text(self) -> str:
        """The content as one string, parts joined by newlines (LiveKit's ``text_content``)."""
        return "\n".join(self.content)

    @property
    def speaker_key(self) -> str:
        """Who an interim result belongs to: speaker label, else participant, else role."""
        return self.speaker_id or self.participant_id or self.role
