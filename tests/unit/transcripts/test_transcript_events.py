from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from roomtape.errors import InvalidInput
from roomtape.transcripts.clock import ClockOffset, to_epoch, to_session
from roomtape.transcripts.events import (
    ConversationItemAdded,
    TranscriptBatch,
    TranscriptEvent,
    UserInputTranscribed,
    to_item,
)

START = 1_700_000_000.0
EVENT: TypeAdapter[ConversationItemAdded | UserInputTranscribed] = TypeAdapter(TranscriptEvent)


def convert(raw: dict[str, object], offset: ClockOffset = ClockOffset()):  # type: ignore[no-untyped-def]
    return to_item(
        EVENT.validate_python(raw),
        session_id="s1",
        session_start_epoch=START,
        offset=offset,
        source="api",
        now=START + 99,
    )


def test_ping_offset_is_the_midpoint_difference_and_half_the_round_trip_bounds_it() -> None:
    # agent is 5 s ahead; 0.2 s round trip; server stamped at the midpoint
    offset = ClockOffset.from_ping(agent_sent=105.0, server_time=100.1, agent_received=105.2)
    assert offset.seconds == pytest.approx(5.0)
    assert offset.uncertainty == pytest.approx(0.1)
    assert offset.to_server(110.0) == pytest.approx(105.0)
    best = ClockOffset.best_of([ClockOffset(4.0, 0.5), offset, ClockOffset(6.0, 0.3)])
    assert best is offset


def test_ping_answer_before_send_and_no_measurement_are_refused() -> None:
    with pytest.raises(InvalidInput):
        ClockOffset.from_ping(agent_sent=2.0, server_time=1.0, agent_received=1.0)
    with pytest.raises(InvalidInput):
        ClockOffset.best_of([])


def test_clock_conversions() -> None:
    offset = ClockOffset(seconds=-2.5)
    assert to_epoch(1.5, "session", START, offset) == START + 1.5
    assert to_epoch(START + 3, "epoch", START, offset) == START + 3
    assert to_epoch(START + 3, "agent", START, offset) == START + 5.5
    assert to_session(START + 7.25, START) == 7.25


def test_livekit_shaped_conversation_item_with_metrics_on_the_agent_clock() -> None:
    item = convert(
        {
            "type": "conversation_item_added",
            "item": {
                "id": "item_abc",
                "type": "message",
                "role": "assistant",
                "content": ["Hello there.", {"type": "image_content", "image": "x"}],
                "interrupted": True,
                "metrics": {"started_speaking_at": START + 12.0, "stopped_speaking_at": START + 13.5},
                "created_at": START + 11.0,
            },
            "spoken_text": "Hello",
        },
        ClockOffset(seconds=2.0),
    )
    assert item.id == "item_abc" and item.role == "assistant" and item.content == ("Hello there.",)
    assert item.interrupted and item.spoken_text == "Hello"
    assert item.start_epoch == START + 10.0 and item.end_epoch == START + 11.5
    assert item.start == pytest.approx(10.0) and item.end == pytest.approx(11.5)
    assert item.created_at == START + 9.0


def test_flat_item_and_user_transcript_with_words_on_the_session_clock() -> None:
    flat = convert({"type": "conversation_item_added", "role": "user", "text": "hi", "start": 1, "end": 2})
    assert flat.content == ("hi",) and flat.start == 1 and flat.start_epoch == START + 1
    assert flat.id.startswith("item_") and flat.created_at == START + 99
    said = convert(
        {
            "type": "user_input_transcribed",
            "transcript": "good morning",
            "is_final": False,
            "speaker_id": "S1",
            "language": "en",
            "start": 3.0,
            "end": 4.0,
            "words": [
                {"word": "good", "start": 3.0, "end": 3.4, "confidence": 0.9},
                {"word": "morning", "start": 3.5, "end": 4.0},
            ],
        }
    )
    assert said.role == "user" and not said.is_final and said.speaker_key == "S1" and said.language == "en"
    assert [w.word for w in said.words] == ["good", "morning"] and said.words[0].start == 3.0


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "conversation_item_added", "role": "user", "text": "x", "start": 5, "end": 4},
        {"type": "conversation_item_added", "role": "user", "text": "   "},
        {"type": "user_input_transcribed", "transcript": "", "is_final": True},
        {"type": "user_input_transcribed", "transcript": "a", "words": [{"word": "a", "start": 2, "end": 1}]},
        {
            "type": "conversation_item_added",
            "role": "assistant",
            "text": "x",
            "metrics": {"started_speaking_at": 10, "stopped_speaking_at": 9},
        },
    ],
)
def test_bad_spans_and_empty_text_are_invalid(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        convert(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"type": "nope"},
        {"type": "conversation_item_added", "role": "robot", "text": "x"},
        {"type": "conversation_item_added", "role": "user", "text": "x", "start": float("nan")},
        {"type": "user_input_transcribed"},
    ],
)
def test_malformed_events_fail_validation(raw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        EVENT.validate_python(raw)


def test_batch_carries_the_clock_offset() -> None:
    batch = TranscriptBatch.model_validate(
        {"clock_offset": 1.5, "events": [{"type": "user_input_transcribed", "transcript": "a"}]}
    )
    assert batch.clock_offset == 1.5 and len(batch.events) == 1
