"""The summary job on a real database (SQLite) with the real extractive summarizer: a summary that waits for a
recording's transcript, is written once the recording's job has transcribed, and is written again when the
transcript changes later (and only then)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from roomtape.config import Settings
from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import Meeting, OutboxEvent, Recording, Session, SessionParticipant, SessionSummary, utcnow
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.jobs.summarize import SUMMARY_EVENT, summarize_session, summary_after_transcription
from roomtape.transcripts.model import TranscriptItem
from roomtape.transcripts.store import add_items


@pytest.fixture
async def deps(tmp_path: Path) -> AsyncIterator[WorkerDeps]:
    opened = await open_deps(Settings(data_dir=tmp_path, secret_key="s" * 40))
    yield opened
    await opened.engine.dispose()


def item(session_id: str, n: int, who: str, text: str, start: float) -> TranscriptItem:
    return TranscriptItem(
        id=f"stt_{n}", session_id=session_id, role="user", content=(text,), created_at=time.time(),
        participant_id=who, start=start, end=start + 2, source="stt",
    )  # fmt: skip


async def events(deps: WorkerDeps) -> list[dict[str, object]]:
    async with deps.sessions() as db:
        return [e.payload for e in await db.scalars(select(OutboxEvent).where(OutboxEvent.event == SUMMARY_EVENT))]


async def test_summary_waits_for_the_recordings_transcript_then_follows_it(deps: WorkerDeps) -> None:
    async with deps.sessions() as db:
        creds = await create_app_with_account(db, "t")
        meeting = Meeting(app_id=creds.app_id, title="standup", summarize_on_end=True)
        db.add(meeting)
        await db.flush()
        session = Session(app_id=creds.app_id, meeting_id=meeting.id, status="ENDED", ended_at=utcnow())
        db.add(session)
        await db.flush()
        db.add(
            SessionParticipant(
                session_id=session.id,
                participant_id="p-ann",
                custom_participant_id="a",
                display_name="Ann",
                preset_name="guest",
            )
        )
        recording = Recording(app_id=creds.app_id, meeting_id=meeting.id, session_id=session.id, status="UPLOADING")
        db.add(recording)
        db.add(SessionSummary(session_id=session.id, app_id=creds.app_id, status="PENDING", attempts=0))
        await db.commit()
        session_id, recording_id = session.id, recording.id

    # Session over, recording still being processed, no transcript yet: the summary waits.
    await summarize_session(deps, session_id)
    async with deps.sessions() as db:
        row = await db.get(SessionSummary, session_id)
        assert row is not None and row.status == "PENDING" and "waiting" in (row.error or "")
    assert await events(deps) == []

    # The recording's job transcribed it (items from speech-to-text) and uploaded: now it is written.
    async with deps.sessions() as db:
        await add_items(db, creds.app_id, [item(session_id, 1, "p-ann", "The deploy pipeline is green again.", 3.0)])
        (await db.get(Recording, recording_id)).status = "UPLOADED"  # type: ignore[union-attr]
        await db.commit()
    await summary_after_transcription(deps, recording_id)
    async with deps.sessions() as db:
        row = await db.get(SessionSummary, session_id)
        assert row is not None and row.status == "COMPLETED" and row.backend == "extractive"
        assert "[00:03] Ann: The deploy pipeline is green again." in (row.text or "")
    assert len(await events(deps)) == 1

    # Nothing changed: not written again.
    await summary_after_transcription(deps, recording_id)
    assert len(await events(deps)) == 1

    # A later transcription adds an item: written again, with it.
    async with deps.sessions() as db:
        await add_items(db, creds.app_id, [item(session_id, 2, "p-ann", "I will rotate the deploy keys today.", 9.0)])
        await db.commit()
    await summary_after_transcription(deps, recording_id)
    sent = await events(deps)
    assert len(sent) == 2
    assert "[00:09] Ann: I will rotate the deploy keys today." in str(sent[-1]["summary"]).split("Action items:")[1]
    async with deps.sessions() as db:
        assert await db.scalar(select(func.count()).select_from(SessionSummary)) == 1
