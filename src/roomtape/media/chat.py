"""Chat in a live room: text messages from participants, checked, kept for later joiners, fanned out.

A message is plain text. It is never interpreted as markup anywhere in roomtape: the join page puts it in
the document with ``textContent`` and the dashboard's templates autoescape it, so ``<b>hi</b>`` shows
as those characters.

The room keeps the last :data:`HISTORY_LIMIT` messages of its session in memory, so a participant who joins
(or reconnects) gets the conversation so far in its ``welcome``. Whether messages are also stored in the
database (RealtimeKit's ``persist_chat``) is the signaling layer's decision, made before the message is
posted here, so a message is either stored and delivered or refused and neither.

No HTTP here.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Final

__all__ = [
    "HISTORY_LIMIT",
    "MAX_CHAT_CHARS",
    "ChatLog",
    "ChatMessage",
    "InvalidChatError",
    "check_chat_text",
    "new_chat_message",
]

MAX_CHAT_CHARS: Final = 4000
"""Longest message, in characters (Unicode code points). Longer ones are refused, not cut: a cut message
would silently lose what the sender wrote."""

HISTORY_LIMIT: Final = 1000
"""Messages a room keeps in memory for the ``welcome`` of later joiners (the newest ones)."""


class InvalidChatError(ValueError):
    """A chat message that is empty, not text, or longer than :data:`MAX_CHAT_CHARS`."""


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat message of a session."""

    id: str
    """Unique message id."""
    participant_id: str
    """The sender (participant id)."""
    name: str | None
    """The sender's display name when it was sent."""
    text: str
    """What was written, as written (plain text)."""
    time: float
    """When the server received it, Unix time in seconds."""

    def to_json(self) -> dict[str, object]:
        """The message in signaling messages: ``{id, participant_id, name, text, time}``."""
        return {
            "id": self.id,
            "participant_id": self.participant_id,
            "name": self.name,
            "text": self.text,
            "time": self.time,
        }


def check_chat_text(text: object) -> str:
    """Return ``text`` if it is a message roomtape accepts.

    Args:
        text: What the client sent as the message.

    Returns:
        The text, unchanged.

    Raises:
        InvalidChatError: if it is not a string, is empty or blank, or is longer than :data:`MAX_CHAT_CHARS`.
    """
    if not isinstance(text, str):
        raise InvalidChatError("chat: 'text' must be a string")
    if not text.strip():
        raise InvalidChatError("chat: 'text' is empty")
    if len(text) > MAX_CHAT_CHARS:
        raise InvalidChatError(f"chat: message is {len(text)} characters long; at most {MAX_CHAT_CHARS} are accepted")
    if "\x00" in text:
        # PostgreSQL text columns cannot hold NUL, and no one types it.
        raise InvalidChatError("chat: 'text' contains a NUL character")
    return text


def new_chat_message(participant_id: str, name: str | None, text: object, *, now: float | None = None) -> ChatMessage:
    """A checked message from ``participant_id``, stamped with the server's time.

    Raises:
        InvalidChatError: see :func:`check_chat_text`.
    """
    return ChatMessage(
        id=str(uuid.uuid4()),
        participant_id=participant_id,
        name=name,
        text=check_chat_text(text),
        time=time.time() if now is None else now,
    )


class ChatLog:
    """The newest messages of a room, in the order they were posted."""

    def __init__(self, limit: int = HISTORY_LIMIT) -> None:
        self._messages: deque[ChatMessage] = deque(maxlen=limit)

    def add(self, message: ChatMessage) -> None:
        """Append a message (the oldest falls off past the limit)."""
        self._messages.append(message)

    def messages(self) -> list[ChatMessage]:
        """The kept messages, oldest first."""
        return list(self._messages)
