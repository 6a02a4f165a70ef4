"""Chat messages: what is accepted, what the room keeps for later joiners, and the event it emits."""

from __future__ import annotations

import pytest

from roomtape.media.chat import MAX_CHAT_CHARS, ChatLog, InvalidChatError, check_chat_text, new_chat_message
from roomtape.media.room import ParticipantNotFoundError, Room, RoomEvent


def test_text_is_kept_exactly_as_written() -> None:
    text = "  <b>bold?</b> & 'quotes' — ünïcødé 🎉\nsecond line "
    assert check_chat_text(text) == text
    message = new_chat_message("p1", "Alice", text, now=1700000000.5)
    assert message.to_json() == {
        "id": message.id,
        "participant_id": "p1",
        "name": "Alice",
        "text": text,
        "time": 1700000000.5,
    }


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   \n\t", "empty"),
        (None, "must be a string"),
        (42, "must be a string"),
        (["hi"], "must be a string"),
        ("a\x00b", "NUL"),
        ("x" * (MAX_CHAT_CHARS + 1), f"{MAX_CHAT_CHARS + 1} characters long; at most {MAX_CHAT_CHARS}"),
    ],
)
def test_refused_text_says_why(text: object, reason: str) -> None:
    with pytest.raises(InvalidChatError, match=reason):
        check_chat_text(text)


def test_the_limit_counts_characters_not_bytes() -> None:
    # 4000 four-byte emoji are 16000 UTF-8 bytes but 4000 characters: accepted.
    assert len(check_chat_text("🎉" * MAX_CHAT_CHARS)) == MAX_CHAT_CHARS


def test_log_keeps_the_newest_in_order() -> None:
    log = ChatLog(limit=3)
    messages = [new_chat_message("p", None, f"m{i}") for i in range(5)]
    for m in messages:
        log.add(m)
    assert [m.text for m in log.messages()] == ["m2", "m3", "m4"]


async def test_room_posts_to_listeners_and_keeps_history() -> None:
    room = Room("r")
    room.join("alice", name="Alice")
    seen: list[RoomEvent] = []
    room.events.on("chat_message", seen.append)
    message = new_chat_message("alice", "Alice", "hello")
    room.post_chat(message)
    assert [(e.name, e.participant_id, e.chat) for e in seen] == [("chat_message", "alice", message)]
    assert room.chat.messages() == [message]
    with pytest.raises(ParticipantNotFoundError):
        room.post_chat(new_chat_message("stranger", None, "hi"))
    assert room.chat.messages() == [message]
    await room.close()
