"""The live transcription job on PostgreSQL, one closed spool segment at a time (real Opus segment files of
espeak-ng speech, real PocketSphinx): a duplicate or concurrent run stores each item once, a resumed run
replaces its own items, ``meeting.transcript`` waits for the session's last segment and goes out once, and a
backend that is down fails the segment (retried first) with the failure shown on the session's recording."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from tests.contract.storage_servers import free_port
from tests.integration.recording.compose_media import RATE, SESSION, T0, record_audio
from tests.speech import concatenate

from roomtape.config import Settings
from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import Meeting, OutboxEvent, Recording, Session, SessionParticipant, TranscriptSegment
from roomtape.db.transcript_segments import segment_id
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.jobs.transcribe import transcribe_pending
from roomtape.jobs.transcribe_live import after_segment, transcribe_segment
from roomtape.recording.finalize import stt_spool_dir
from roomtape.recording.manifest import load
from roomtape.recording.segmenter import track_directory
from roomtape.transcripts.ingest import on_session_ended
from roomtape.transcripts.store import list_session

SESSION_LEAD = 3.0
"""The session started this long before the first segment (T0)."""


@pytest.fixture
async def deps(tmp_path: Path, pg_database_url: str) -> AsyncIterator[WorkerDeps]:
    settings = Settings(
        data_dir=tmp_path,
        database_url=pg_database_url,
        secret_key="s" * 40,
        stt_max_attempts=2,
        stt_backoff_base_secs=0.05,
    )
    opened = await open_deps(settings)
    yield opened
    await opened.engine.dispose()


def _48k(text: str) -> np.ndarray:
    audio, _ = concatenate([text], gap=0.3, lead=0.5)
    x = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64) / 32768
    return np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)


async def _session(deps: WorkerDeps, speakers: dict[str, str], *, ended: bool) -> tuple[str, dict[str, str]]:
    """A session (id ``SESSION``, fresh per test) whose participants each said their text in one closed spool
    segment; returns the app id and each participant's ``pending`` segment id."""
    started = datetime.fromtimestamp(T0, UTC) - timedelta(seconds=SESSION_LEAD)
    base = stt_spool_dir(deps.settings.data_dir)
    async with deps.sessions() as db:
        old = await db.get(Session, SESSION)
        if old is not None:  # the database is shared by the module's tests
            await db.delete(old)
            for event in await db.scalars(select(OutboxEvent).where(OutboxEvent.event == "meeting.transcript")):
                if event.payload["meeting"]["sessionId"] == SESSION:
                    await db.delete(event)
            await db.commit()
        creds = await create_app_with_account(db, "live-stt")
        meeting = Meeting(app_id=creds.app_id, title="standup", ai_config={"transcription": {"language": "en-US"}})
        db.add(meeting)
        await db.flush()
        db.add(
            Session(
                id=SESSION,
                app_id=creds.app_id,
                meeting_id=meeting.id,
                status="ENDED" if ended else "LIVE",
                started_at=started,
                ended_at=started + timedelta(seconds=30) if ended else None,
            )
        )
        ids: dict[str, str] = {}
        for n, (pid, text) in enumerate(speakers.items()):
            db.add(
                SessionParticipant(
                    session_id=SESSION,
                    participant_id=pid,
                    custom_participant_id=pid,
                    display_name=pid.title(),
                    preset_name="group_call_host",
                )
            )
            samples = _48k(text)
            at = 4.0 * n
            padded = np.concatenate([np.zeros(round(at * RATE)), samples])
            record_audio(base, pid, padded, [(at, at + len(samples) / RATE)])
            directory = track_directory(base, SESSION, pid, "audio")
            (entry,) = load(directory).segments
            ids[pid] = segment_id(SESSION, pid, "audio", entry.index)
            db.add(
                TranscriptSegment(
                    id=ids[pid],
                    app_id=creds.app_id,
                    session_id=SESSION,
                    participant_id=pid,
                    kind="audio",
                    index=entry.index,
                    path=(directory / entry.file).relative_to(deps.settings.data_dir).as_posix(),
                    status="pending",
                    start_epoch_ms=entry.start_epoch_ms,
                    end_epoch_ms=entry.end_epoch_ms,
                    attempts=0,
                    items=0,
                )
            )
        await db.commit()
        return creds.app_id, ids


async def _row(deps: WorkerDeps, row_id: str) -> TranscriptSegment:
    async with deps.sessions() as db:
        row = await db.get(TranscriptSegment, row_id)
        assert row is not None
        return row


async def _events(deps: WorkerDeps) -> list[dict[str, Any]]:
    async with deps.sessions() as db:
        rows = await db.scalars(select(OutboxEvent).where(OutboxEvent.event == "meeting.transcript"))
        return [r.payload for r in rows if r.payload["meeting"]["sessionId"] == SESSION]


async def test_duplicate_concurrent_and_resumed_runs_store_each_item_once(deps: WorkerDeps) -> None:
    _, ids = await _session(deps, {"alice": "good morning everyone"}, ended=False)
    row = await _row(deps, ids["alice"])
    path = deps.settings.data_dir / row.path
    kept = path.with_suffix(".kept")
    shutil.copy(path, kept)

    await asyncio.gather(transcribe_segment(deps, ids["alice"]), transcribe_segment(deps, ids["alice"]))
    async with deps.sessions() as db:
        items = await list_session(db, SESSION)
    assert items and "morning" in " ".join(i.text for i in items)
    assert all(i.participant_id == "alice" and i.speaker_id == "Alice" and i.source == "stt" for i in items)
    # The segment's first sample was at T0, SESSION_LEAD s into the session: times on the session clock.
    assert SESSION_LEAD < items[0].start < SESSION_LEAD + 1.5
    assert items[0].start_epoch == pytest.approx(T0 - SESSION_LEAD + items[0].start, abs=0.002)
    done = await _row(deps, ids["alice"])
    assert done.status == "done" and done.items == len(items) and done.backend == "pocketsphinx/en-us"
    assert not path.exists()  # transcribed: the spool file is gone

    await transcribe_segment(deps, ids["alice"])  # a duplicate message: nothing happens
    async with deps.sessions() as db:
        assert [i.id for i in await list_session(db, SESSION)] == [i.id for i in items]

    # A run cut short (the worker died while "running") is resumed: same items, replaced, not doubled.
    shutil.copy(kept, path)
    async with deps.sessions() as db:
        stale = await db.get(TranscriptSegment, ids["alice"])
        assert stale is not None
        stale.status = "running"
        await db.commit()
    await transcribe_segment(deps, ids["alice"])
    async with deps.sessions() as db:
        again = await list_session(db, SESSION)
    assert [(i.id, i.text, i.start) for i in again] == [(i.id, i.text, i.start) for i in items]
    assert (await _row(deps, ids["alice"])).attempts >= 2


async def test_meeting_transcript_waits_for_the_last_segment_and_goes_out_once(deps: WorkerDeps) -> None:
    _, ids = await _session(deps, {"alice": "good morning everyone", "bob": "see you tomorrow"}, ended=True)
    await transcribe_segment(deps, ids["alice"])
    assert await _events(deps) == []  # bob's segment is still pending
    async with deps.sessions() as db:
        # What the session's end (lifecycle) asks: alice's items are in, bob's segment is still to do.
        assert await list_session(db, SESSION)
        assert await on_session_ended(db, SESSION) is None
        await db.commit()
    await transcribe_segment(deps, ids["bob"])
    (event,) = await _events(deps)
    async with deps.sessions() as db:
        items = await list_session(db, SESSION)
    assert {i.participant_id for i in items} == {"alice", "bob"}
    assert event["itemCount"] == len(items) and event["revision"] == 1
    await after_segment(deps, SESSION)  # a late duplicate of the last job's end: no second event
    await transcribe_segment(deps, ids["bob"])
    assert len(await _events(deps)) == 1


async def test_backend_down_fails_the_segment_and_the_recording_shows_it(deps: WorkerDeps) -> None:
    down = deps.settings.model_copy(update={"stt_url": f"http://127.0.0.1:{free_port()}", "stt_timeout_secs": 5.0})
    deps.settings = down
    app_id, ids = await _session(deps, {"alice": "good morning everyone"}, ended=True)
    async with deps.sessions() as db:
        meeting_id = (await db.get(Session, SESSION)).meeting_id  # type: ignore[union-attr]
        rec = Recording(
            app_id=app_id,
            meeting_id=meeting_id,
            session_id=SESSION,
            kind="track",
            status="UPLOADING",
            started_time=datetime.fromtimestamp(T0 - 1, UTC),
            stopped_time=datetime.fromtimestamp(T0 + 20, UTC),
            config={"api": "realtimekit"},
            output_file_name="",
        )
        db.add(rec)
        await db.commit()
        rec_id = rec.id
    await transcribe_segment(deps, ids["alice"])
    row = await _row(deps, ids["alice"])
    assert row.status == "failed" and row.error and "unreachable" in row.error
    await transcribe_pending(deps, rec_id)  # the recording's own step: the session was transcribed live
    async with deps.sessions() as db:
        rec_after = await db.get(Recording, rec_id)
        assert rec_after is not None
        progress = rec_after.config["transcription"]
        assert await list_session(db, SESSION) == []
    assert progress["mode"] == "live" and progress["status"] == "failed" and "unreachable" in progress["error"]
    assert progress["segments"] == 1 and progress["segments_failed"] == 1 and progress["items"] == 0
    assert await _events(deps) == []  # nothing to send
