"""Turning what a backend heard in one recorded segment into transcript items on the session clock.

A segment is one continuous stretch of one participant's audio track (from unmute to mute); it may hold
several things said with pauses between them. Each run of words without a pause of :data:`PAUSE_SECS` or more
becomes one item, so the dashboard's transcript scrolls with the talk instead of jumping a minute at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

from roomtape.transcripts.model import Role, TranscriptItem, Word
from roomtape.transcripts.stt.base import SpokenWord, Transcription

PAUSE_SECS = 0.8
"""A silence at least this long between two words ends an utterance (people pause 0.2 to 0.5 s mid-sentence)."""


def utterances(words: Sequence[SpokenWord], pause: float = PAUSE_SECS) -> list[list[SpokenWord]]:
    """``words`` split where the silence between two of them is ``pause`` or longer."""
    groups: list[list[SpokenWord]] = []
    for w in words:
        if groups and w.start - groups[-1][-1].end < pause:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def segment_items(
    heard: Transcription,
    *,
    item_prefix: str,
    session_id: str,
    session_start_epoch: float,
    segment_start_epoch: float,
    participant_id: str,
    role: Role = "user",
    speaker_id: str | None = None,
    now: float,
) -> list[TranscriptItem]:
    """One final item per utterance, its words and times moved from the segment's clock to the session's.

    Args:
        heard: The backend's result for the segment (times from the segment's first sample).
        item_prefix: Stable per segment (item ids are ``{prefix}-{n}``), so a job run again replaces its items.
        session_id: The session the segment was recorded in.
        session_start_epoch: The session's start, Unix seconds (0 on the session clock).
        segment_start_epoch: Wall-clock time of the segment's first sample, Unix seconds.
        participant_id: Whose track it is.
        role: The speaker's role (``user`` for people).
        speaker_id: A label for the speaker (the participant's display name), if known.
        now: Creation time of the items, Unix seconds.
    """
    shift = segment_start_epoch - session_start_epoch
    items = []
    for n, group in enumerate(utterances(heard.words)):
        confidences = [w.confidence for w in group if w.confidence is not None]
        items.append(
            TranscriptItem(
                id=f"{item_prefix}-{n}",
                session_id=session_id,
                role=role,
                content=(" ".join(w.word for w in group),),
                created_at=now,
                participant_id=participant_id,
                speaker_id=speaker_id,
                start=round(shift + group[0].start, 3),
                end=round(shift + group[-1].end, 3),
                start_epoch=round(segment_start_epoch + group[0].start, 3),
                end_epoch=round(segment_start_epoch + group[-1].end, 3),
                words=tuple(
                    Word(w.word, round(shift + w.start, 3), round(shift + w.end, 3), w.confidence) for w in group
                ),
                language=heard.language,
                source="stt",
                confidence=round(sum(confidences) / len(confidences), 4) if confidences else None,
                extra={"stt_backend": heard.backend},
            )
        )
    return items
