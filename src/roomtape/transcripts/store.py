"""The ``transcript_items`` table: adding items as they arrive, listing them per session and per recording.

Interim speech-to-text results (``user_input_transcribed`` with ``is_final`` false) are kept only until the
next result of the same utterance: each new result of a speaker's utterance, interim or final, replaces the
interim one before it. Finals are kept. Resending an item id replaces that item (agents retry).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Recording, utcnow
from roomtape.db.models import TranscriptItem as Row
from roomtape.transcripts.model import ROLES, Channel, ItemKind, Role, Source, TranscriptItem, Word


def _words_out(words: Sequence[Word]) -> list[dict[str, Any]]:
    return [{"word": w.word, "start": w.start, "end": w.end, "confidence": w.confidence} for w in words]


def _words_in(raw: list[Any]) -> tuple[Word, ...]:
    return tuple(
        Word(str(w["word"]), float(w["start"]), float(w["end"]), w.get("confidence"))
        for w in raw
        if isinstance(w, dict)
    )


def _fill(row: Row, item: TranscriptItem) -> None:
    row.kind = item.kind
    row.role = item.role
    row.content = list(item.content)
    row.spoken_text = item.spoken_text
    row.interrupted = item.interrupted
    row.participant_id = item.participant_id
    row.speaker_id = item.speaker_id
    row.channel = item.channel
    row.start = item.start
    row.end = item.end
    row.start_epoch = item.start_epoch
    row.end_epoch = item.end_epoch
    row.created_epoch = item.created_at
    row.words = _words_out(item.words)
    row.language = item.language
    row.is_final = item.is_final
    row.utterance_id = item.utterance_id
    row.source = item.source
    row.confidence = item.confidence
    row.extra = dict(item.extra)


def to_item(row: Row) -> TranscriptItem:
    """The transcript item a row holds."""
    role: Role = row.role if row.role in ROLES else "user"
    channel: Channel | None = row.channel if row.channel in ("left", "right", "mono") else None  # type: ignore[assignment]
    kind: ItemKind = "user_input_transcribed" if row.kind == "user_input_transcribed" else "conversation_item_added"
    source: Source = row.source if row.source in ("agent", "livekit", "api", "stt") else "api"  # type: ignore[assignment]
    return TranscriptItem(
        id=row.item_id,
        session_id=row.session_id,
        role=role,
        content=tuple(str(c) for c in row.content),
        created_at=row.created_epoch,
        kind=kind,
        interrupted=row.interrupted,
        spoken_text=row.spoken_text,
        participant_id=row.participant_id,
        speaker_id=row.speaker_id,
        channel=channel,
        start=row.start,
        end=row.end,
        start_epoch=row.start_epoch,
        end_epoch=row.end_epoch,
        words=_words_in(row.words or []),
        language=row.language,
        is_final=row.is_final,
        utterance_id=row.utterance_id,
        source=source,
        confidence=row.confidence,
        extra=dict(row.extra or {}),
    )


async def add_items(db: AsyncSession, app_id: str, items: Sequence[TranscriptItem]) -> None:
    """Store ``items`` in order, replacing superseded interim results and items sent again. Caller commits."""
    for item in items:
        if item.kind == "user_input_transcribed":
            same_utterance = (
                Row.utterance_id == item.utterance_id if item.utterance_id is not None else Row.utterance_id.is_(None)
            )
            await db.execute(
                delete(Row).where(
                    Row.session_id == item.session_id,
                    Row.kind == "user_input_transcribed",
                    Row.is_final.is_(False),
                    func.coalesce(Row.speaker_id, Row.participant_id, Row.role) == item.speaker_key,
                    same_utterance,
                    Row.item_id != item.id,
                )
            )
        row = await db.scalar(select(Row).where(Row.session_id == item.session_id, Row.item_id == item.id))
        if row is None:
            row = Row(app_id=app_id, session_id=item.session_id, item_id=item.id)
            db.add(row)
        _fill(row, item)
        await db.flush()


def _order() -> tuple[Any, ...]:
    return (func.coalesce(Row.start_epoch, Row.created_epoch), Row.created_epoch, Row.item_id)


async def list_session(db: AsyncSession, session_id: str, *, include_interim: bool = False) -> list[TranscriptItem]:
    """The session's items in speaking order (by start, else creation time)."""
    query = select(Row).where(Row.session_id == session_id)
    if not include_interim:
        query = query.where(Row.is_final.is_(True))
    rows = (await db.scalars(query.order_by(*_order()))).all()
    return [to_item(r) for r in rows]


async def count_session(db: AsyncSession, session_id: str) -> int:
    """How many final items the session has."""
    query = select(func.count()).select_from(Row).where(Row.session_id == session_id, Row.is_final.is_(True))
    return int(await db.scalar(query) or 0)


def recording_span(recording: Recording, now: datetime | None = None) -> tuple[float, float]:
    """The recording's span in Unix seconds: from its first frame (else its invocation) to its stop (else now)."""
    start = recording.started_time or recording.invoked_time
    stop = recording.stopped_time or now or utcnow()
    return start.timestamp(), max(start.timestamp(), stop.timestamp())


def rebase(item: TranscriptItem, origin_epoch: float, session_start_epoch: float) -> TranscriptItem:
    """``item`` with ``start``/``end`` and word times counted from ``origin_epoch`` instead of the session start."""
    shift = session_start_epoch - origin_epoch
    return dataclasses.replace(
        item,
        start=None if item.start_epoch is None else item.start_epoch - origin_epoch,
        end=None if item.end_epoch is None else item.end_epoch - origin_epoch,
        words=tuple(dataclasses.replace(w, start=w.start + shift, end=w.end + shift) for w in item.words),
    )


def in_span(item: TranscriptItem, span: tuple[float, float]) -> bool:
    """Whether the item overlaps the span (an item without times counts at its creation)."""
    start = item.start_epoch if item.start_epoch is not None else item.created_at
    end = item.end_epoch if item.end_epoch is not None else start
    return end >= span[0] and start <= span[1]


async def list_recording(
    db: AsyncSession, recording: Recording, session_start_epoch: float, now: datetime | None = None
) -> list[TranscriptItem]:
    """The items said while ``recording`` ran, with times on the composite's clock (0 = its first frame).

    Paused spans are cut out of the composite, so they are cut out here too: an item said entirely during a
    pause is left out, and times after a pause move back by its length, so item times match the file.
    """
    if recording.session_id is None:
        return []
    from roomtape.recording.meeting import recording_spans  # here: recording imports transcripts' callers

    span = recording_span(recording, now)
    items = [i for i in await list_session(db, recording.session_id) if in_span(i, span)]
    spans = recording_spans(recording) if recording.config.get("pauses") else []
    if len(spans) < 2:
        return [rebase(i, span[0], session_start_epoch) for i in items]
    recorded = [(s / 1000, e / 1000) for s, e in spans]
    return [cut_pauses(i, recorded, session_start_epoch) for i in items if any(in_span(i, r) for r in recorded)]


def output_time(epoch: float, spans: Sequence[tuple[float, float]]) -> float:
    """Where the instant ``epoch`` lands in a file made of ``spans`` (Unix seconds) played back to back.

    An instant inside a gap between spans lands where the next span begins; one after the last span, at the end.
    """
    elapsed = 0.0
    for start, end in spans:
        if epoch < start:
            return elapsed
        if epoch <= end:
            return elapsed + (epoch - start)
        elapsed += end - start
    return elapsed


def cut_pauses(
    item: TranscriptItem, spans: Sequence[tuple[float, float]], session_start_epoch: float
) -> TranscriptItem:
    """``item`` with its times (and its words') on the clock of a file made of ``spans`` only."""

    def at(epoch: float | None) -> float | None:
        return None if epoch is None else output_time(epoch, spans)

    return dataclasses.replace(
        item,
        start=at(item.start_epoch),
        end=at(item.end_epoch),
        words=tuple(
            dataclasses.replace(
                w,
                start=output_time(session_start_epoch + w.start, spans),
                end=output_time(session_start_epoch + w.end, spans),
            )
            for w in item.words
        ),
    )
