from __future__ import annotations

import csv
import dataclasses
import io

import srt
import webvtt
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from roomtape.transcripts.export import cue_span, timestamp, to_csv, to_json, to_livekit, to_srt, to_webvtt
from roomtape.transcripts.model import TranscriptItem, Word

T0 = 1_700_000_000.0


def item(n: int, text: str, start: float | None, end: float | None, role: str = "user") -> TranscriptItem:
    return TranscriptItem(
        id=f"item_{n}",
        session_id="s1",
        role=role,  # type: ignore[arg-type]
        content=(text,),
        created_at=T0 + (start or 0),
        start=start,
        end=end,
        start_epoch=None if start is None else T0 + start,
        end_epoch=None if end is None else T0 + end,
    )


def test_timestamps() -> None:
    assert timestamp(0) == "00:00:00.000"
    assert timestamp(3725.0456) == "01:02:05.046"
    assert timestamp(3725.0456, ",") == "01:02:05,046"
    assert timestamp(360000.0) == "100:00:00.000"


def test_webvtt_voices_escaping_and_numbered_cues() -> None:
    items = [
        item(1, "Hi <b>there</b> & --> you", 1.0, 2.5),
        item(2, "line one\n\nline two", 3.0, 4.0, role="assistant"),
        item(3, "   ", 5.0, 6.0),
    ]
    text = to_webvtt(items)
    assert text.startswith("WEBVTT\n\n1\n00:00:01.000 --> 00:00:02.500\n")
    assert "<v User>Hi &lt;b&gt;there&lt;/b&gt; &amp; --&gt; you\n" in text
    assert "2\n00:00:03.000 --> 00:00:04.000\n<v Agent>line one\nline two\n" in text
    assert "\n3\n" not in text  # the blank item has no cue
    captions = webvtt.from_string(text)
    assert [c.voice for c in captions] == ["User", "Agent"]


def test_srt_prefixes_the_speaker() -> None:
    subs = list(srt.parse(to_srt([item(1, "hello", 0.5, 1.25), item(2, "hey", 2, 3, role="assistant")])))
    assert [s.content for s in subs] == ["User: hello", "Agent: hey"]
    assert subs[0].start.total_seconds() == 0.5 and subs[0].end.total_seconds() == 1.25


def test_vtt_and_srt_name_the_speaker_like_the_json_export() -> None:
    alice = dataclasses.replace(item(1, "good morning", 1.0, 2.0), participant_id="p1", speaker_id="Alice <Ops>")
    bob = dataclasses.replace(item(2, "see you", 3.0, 4.0), participant_id="p2", speaker_id="Bob\nSmith")
    agent = item(3, "hello", 5.0, 6.0, role="assistant")  # names no speaker: its role's voice
    items = [alice, bob, agent]
    captions = webvtt.from_string(to_webvtt(items))
    assert [c.voice for c in captions] == ["Alice &lt;Ops&gt;", "Bob Smith", "Agent"]
    assert [c.text for c in captions] == ["good morning", "see you", "hello"]
    subs = list(srt.parse(to_srt(items)))
    assert [s.content for s in subs] == ["Alice <Ops>: good morning", "Bob Smith: see you", "Agent: hello"]
    rich = to_json(items, session_id="s1", origin_epoch=T0)["items"]
    assert [i["speaker_id"] for i in rich] == ["Alice <Ops>", "Bob\nSmith", None]
    rows = list(csv.reader(io.StringIO(to_csv(items, T0))))
    assert [r[4] for r in rows[1:]] == ["Alice <Ops>", "Bob Smith", "Agent"]


def test_untimed_item_sits_at_its_creation_and_lasts_while_read() -> None:
    untimed = TranscriptItem(id="x", session_id="s", role="system", content=("a" * 64,), created_at=T0 + 10)
    assert cue_span(untimed, T0) == (10.0, 14.0)
    assert cue_span(item(1, "a", 3.0, 3.0), T0) == (3.0, 4.0)
    assert cue_span(item(1, "a", -2.0, 1.0), T0) == (0.0, 1.0)


def test_livekit_shape_matches_chat_context_to_dict() -> None:
    it = item(1, "hello", 1.0, 2.0, role="assistant")
    out = to_livekit([it])
    assert out == {
        "items": [
            {
                "id": "item_1",
                "type": "message",
                "role": "assistant",
                "content": ["hello"],
                "interrupted": False,
                "extra": {},
                "metrics": {"started_speaking_at": T0 + 1.0, "stopped_speaking_at": T0 + 2.0},
                "created_at": T0 + 1.0,
            }
        ]
    }


def test_rich_json_and_csv() -> None:
    it = TranscriptItem(
        id="i", session_id="s", role="user", content=("a, \"b\"",), created_at=T0, start=1.0, end=2.0,
        words=(Word("a", 1.0, 1.5, 0.9),), channel="left", speaker_id="S1",
    )  # fmt: skip
    rich = to_json([it], session_id="s", origin_epoch=T0)
    assert rich["clock"] == "session" and rich["items"][0]["words"] == [
        {"word": "a", "start": 1.0, "end": 1.5, "confidence": 0.9}
    ]
    assert rich["items"][0]["channel"] == "left"
    rows = list(csv.reader(io.StringIO(to_csv([it], T0))))
    assert rows[1][:2] == ["i", "1.000"] and rows[1][6] == 'a, "b"'


texts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",), include_characters="<>&-\n\r\t "),
    min_size=0,
    max_size=40,
)
spans = st.tuples(st.floats(0, 40_000, allow_nan=False), st.floats(0, 30, allow_nan=False))
roles = st.sampled_from(["user", "assistant", "system"])


@st.composite
def transcripts(draw: st.DrawFn) -> list[TranscriptItem]:
    out = []
    for n in range(draw(st.integers(0, 8))):
        start, length = draw(spans)
        out.append(item(n, draw(texts), start, start + length, draw(roles)))
    return out


def _expected(items: list[TranscriptItem]) -> list[tuple[int, int]]:
    spans = []
    for it in items:
        if not any(line.strip() for line in it.text.splitlines()):
            continue
        start, end = cue_span(it, T0)
        s_ms = round(start * 1000)
        spans.append((s_ms, max(round(end * 1000), s_ms + 1)))
    return sorted(spans)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transcripts())
def test_webvtt_round_trips_timing_and_stays_valid(items: list[TranscriptItem]) -> None:
    text = to_webvtt(items, T0)
    captions = webvtt.from_string(text)
    times = sorted((_ms(c.start), _ms(c.end)) for c in captions)
    assert times == _expected(items)
    assert [c.identifier for c in captions] == [str(n) for n in range(1, len(captions) + 1)]
    for cue in text.split("\n\n")[1:]:
        if not cue.strip():
            continue
        lines = cue.split("\n")
        assert lines[1].count("-->") == 1 and all("-->" not in line for line in lines[2:])
        assert lines[2].startswith("<v ") and all(line.strip() for line in lines[2:])
        assert "<" not in "".join(lines[2:]).replace("<v User>", "").replace("<v Agent>", "").replace("<v System>", "")
        assert all(_ms(c.start) < _ms(c.end) for c in captions)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transcripts())
def test_srt_round_trips_timing_and_stays_valid(items: list[TranscriptItem]) -> None:
    text = to_srt(items, T0)
    subs = list(srt.parse(text))
    times = sorted((round(s.start.total_seconds() * 1000), round(s.end.total_seconds() * 1000)) for s in subs)
    assert times == _expected(items)
    assert [s.index for s in subs] == list(range(1, len(subs) + 1))
    assert all(s.content.split(": ", 1)[0] in {"User", "Agent", "System"} for s in subs)


def _ms(ts: str) -> int:
    hms, ms = ts.split(".")
    h, m, s = (int(x) for x in hms.split(":"))
    return ((h * 60 + m) * 60 + s) * 1000 + int(ms)
