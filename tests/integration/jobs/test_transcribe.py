"""A stopped meeting recording's job transcribes every participant's recorded audio (real Opus segment files of
espeak-ng speech, real PocketSphinx or a real OpenAI-compatible server), then uploads — and when the backend
is down or answers garbage, retries, marks the transcript failed, and still uploads the recording."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import select
from tests.contract.storage_servers import free_port
from tests.contract.stt_server import SttServer
from tests.integration.recording.compose_media import RATE, SESSION, T0, record_audio, record_video, solid
from tests.speech import concatenate, onset

from roomtape.api.routers.realtimekit.recordings import recording_out
from roomtape.config import Settings
from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import Meeting, OutboxEvent, Recording, Session, SessionParticipant
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.jobs.runner import recording_job
from roomtape.jobs.upload import local_dir
from roomtape.transcripts.export import to_srt, to_webvtt
from roomtape.transcripts.store import list_session
from roomtape.transcripts.stt import PcmAudio

SESSION_LEAD = 5.0
"""The session started this long before the recording's first frame (T0)."""
ALICE = ["good morning everyone", "i agree with that"]
BOB = ["see you tomorrow"]


def _48k(audio: PcmAudio) -> np.ndarray:
    """16 kHz PCM → 48 kHz float samples (linear interpolation; Opus then band-limits it anyway)."""
    x = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64) / 32768
    t = np.arange(len(x) * 3) / 3
    return np.interp(t, np.arange(len(x)), x)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path, secret_key="s" * 40, stt_max_attempts=3, stt_backoff_base_secs=0.05)


@pytest.fixture
async def make_deps(tmp_path: Path) -> AsyncIterator[Any]:
    opened: list[WorkerDeps] = []

    async def make(settings: Settings) -> WorkerDeps:
        opened.append(await open_deps(settings))
        return opened[-1]

    yield make
    for d in opened:
        await d.engine.dispose()


@pytest.fixture
def stt_server() -> Iterator[SttServer]:
    server = SttServer().start()
    yield server
    server.stop()


async def _meeting_recording(
    deps: WorkerDeps, audio: dict[str, list[tuple[float, np.ndarray]]], *, transcribe: bool = True, video: bool = False
) -> str:
    """An ENDED session and its stopped composite recording whose participants sent ``audio``:
    per participant, (start seconds after T0, 48 kHz samples) segments."""
    seconds = max([s + len(x) / RATE for segs in audio.values() for s, x in segs] or [4.0]) + 0.5
    started = datetime.fromtimestamp(T0, UTC)
    async with deps.sessions() as db:
        creds = await create_app_with_account(db, "stt")
        meeting = Meeting(app_id=creds.app_id, title="standup", transcribe_on_end=transcribe)
        db.add(meeting)
        await db.flush()
        db.add(
            Session(
                id=SESSION,
                app_id=creds.app_id,
                meeting_id=meeting.id,
                status="ENDED",
                started_at=started - timedelta(seconds=SESSION_LEAD),
                ended_at=started + timedelta(seconds=seconds + 1),
            )
        )
        for pid in audio:
            db.add(
                SessionParticipant(
                    session_id=SESSION,
                    participant_id=pid,
                    custom_participant_id=pid,
                    display_name=pid.title(),
                    preset_name="group_call_host",
                )
            )
        rec = Recording(
            app_id=creds.app_id,
            meeting_id=meeting.id,
            session_id=SESSION,
            kind="composite",
            status="UPLOADING",
            started_time=started,
            stopped_time=started + timedelta(seconds=seconds),
            config={"api": "realtimekit", "pauses": [], "progress": {"done": True}},
            output_file_name="",
        )
        db.add(rec)
        await db.commit()
        base = local_dir(deps.settings, rec.id)
        for pid, segs in audio.items():
            total = max(s + len(x) / RATE for s, x in segs)
            samples = np.zeros(round(total * RATE) + 960)
            for start, x in segs:
                samples[round(start * RATE) : round(start * RATE) + len(x)] = x
            record_audio(base, pid, samples, [(s, s + len(x) / RATE) for s, x in segs])
        if video:
            record_video(base, "carol", lambda i: solid((200, 30, 30), 320, 240), [(0, seconds)])
        return rec.id


async def _rec(deps: WorkerDeps, rec_id: str) -> Recording:
    async with deps.sessions() as db:
        rec = await db.get(Recording, rec_id)
        assert rec is not None
        return rec


async def _transcript_events(deps: WorkerDeps) -> list[dict[str, Any]]:
    async with deps.sessions() as db:
        rows = await db.scalars(select(OutboxEvent).where(OutboxEvent.event == "meeting.transcript"))
        return [r.payload for r in rows]


async def test_meeting_audio_becomes_timed_items_per_speaker_then_uploads(settings: Settings, make_deps: Any) -> None:
    deps = await make_deps(settings)
    alice, alice_phrases = concatenate(ALICE, gap=1.2, lead=0.6)
    bob, bob_phrases = concatenate(BOB, gap=0.5, lead=0.6)
    bob_at = alice.duration + 1.0  # bob speaks after alice, in a segment of his own
    rec_id = await _meeting_recording(deps, {"alice": [(0.0, _48k(alice))], "bob": [(bob_at, _48k(bob))]})

    await recording_job(deps, rec_id)

    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED", rec.error
    progress = rec.config["transcription"]
    assert progress["status"] == "done", progress
    assert progress["backend"] == "pocketsphinx/en-us"
    assert progress["segments"] == progress["segments_done"] == 2 and progress["segments_failed"] == 0
    async with deps.sessions() as db:
        items = await list_session(db, SESSION)
    assert progress["items"] == len(items) >= 3
    assert {i.participant_id for i in items} == {"alice", "bob"}
    assert all(i.source == "stt" and i.role == "user" and i.words for i in items)
    assert {i.speaker_id for i in items} == {"Alice", "Bob"}
    # Session clock: the recording (and alice's segment) began SESSION_LEAD s after the session.
    expected = [("alice", SESSION_LEAD + p.onset) for p in alice_phrases]
    expected += [("bob", SESSION_LEAD + bob_at + p.onset) for p in bob_phrases]
    for pid, at in expected:
        first = min(w.start for i in items if i.participant_id == pid for w in i.words if w.start > at - 0.3)
        assert abs(first - at) < 0.15, (pid, first, at)
    for i in items:
        assert i.start == i.words[0].start and i.end == i.words[-1].end
        assert i.start_epoch == pytest.approx(T0 - SESSION_LEAD + i.start, abs=0.002)
    assert "morning" in " ".join(i.text for i in items)
    vtt, srt = to_webvtt(items), to_srt(items)
    assert all(i.text in vtt and i.text in srt for i in items)
    (event,) = await _transcript_events(deps)
    assert event["itemCount"] == len(items) and event["transcriptDownloadUrl"]
    assert not any(local_dir(settings, rec_id).rglob("*.webm"))  # uploaded: local copies gone
    shown = recording_out(rec).transcription  # what the API (and the dashboard) show
    assert shown is not None and shown.status == "done" and shown.items == len(items)


async def test_meeting_without_transcription_is_not_transcribed(settings: Settings, make_deps: Any) -> None:
    deps = await make_deps(settings)
    alice, _ = concatenate(ALICE[:1])
    rec_id = await _meeting_recording(deps, {"alice": [(0.0, _48k(alice))]}, transcribe=False)
    await recording_job(deps, rec_id)
    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED" and "transcription" not in rec.config


async def test_silence_gives_no_items_and_no_webhook(settings: Settings, make_deps: Any) -> None:
    deps = await make_deps(settings)
    rec_id = await _meeting_recording(deps, {"alice": [(0.0, np.zeros(RATE * 3))]})
    await recording_job(deps, rec_id)
    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED"
    assert rec.config["transcription"]["status"] == "done"
    assert rec.config["transcription"]["segments_done"] == 1 and rec.config["transcription"]["items"] == 0
    assert await _transcript_events(deps) == []


async def test_no_audio_track_is_done_with_a_note(settings: Settings, make_deps: Any) -> None:
    deps = await make_deps(settings)
    rec_id = await _meeting_recording(deps, {}, video=True)
    await recording_job(deps, rec_id)
    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED"
    progress = rec.config["transcription"]
    assert progress["status"] == "done" and progress["segments"] == 0 and progress["note"] == "no audio recorded"


async def test_backend_down_is_retried_then_failed_and_the_recording_uploads(
    settings: Settings, make_deps: Any
) -> None:
    down = settings.model_copy(update={"stt_url": f"http://127.0.0.1:{free_port()}", "stt_timeout_secs": 5.0})
    deps = await make_deps(down)
    alice, _ = concatenate(ALICE[:1])
    rec_id = await _meeting_recording(deps, {"alice": [(0.0, _48k(alice))], "bob": [(0.5, _48k(alice))]})
    await recording_job(deps, rec_id)
    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED", rec.error
    progress = rec.config["transcription"]
    assert progress["status"] == "failed" and "unreachable" in progress["error"]
    assert progress["segments_done"] == 0 and progress["segments_failed"] == 1  # stopped at the first: down
    shown = recording_out(rec).transcription
    assert shown is not None and shown.status == "failed" and shown.error and "unreachable" in shown.error
    async with deps.sessions() as db:
        assert await list_session(db, SESSION) == []


@pytest.mark.parametrize("mode", ["garbage", "wrong-json"])
async def test_garbage_answers_are_retried_then_failed(
    settings: Settings, make_deps: Any, stt_server: SttServer, mode: str
) -> None:
    stt_server.mode = mode
    deps = await make_deps(settings.model_copy(update={"stt_url": stt_server.url}))
    alice, _ = concatenate(ALICE[:1])
    rec_id = await _meeting_recording(deps, {"alice": [(0.0, _48k(alice))]})
    await recording_job(deps, rec_id)
    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED"
    assert rec.config["transcription"]["status"] == "failed"
    assert len(stt_server.requests) == settings.stt_max_attempts  # retried, then given up


async def test_overloaded_server_is_retried_until_it_answers(
    settings: Settings, make_deps: Any, stt_server: SttServer
) -> None:
    stt_server.fail_next = 2
    deps = await make_deps(settings.model_copy(update={"stt_url": stt_server.url}))
    alice, phrases = concatenate(ALICE[:1])
    rec_id = await _meeting_recording(deps, {"alice": [(0.0, _48k(alice))]})
    await recording_job(deps, rec_id)
    rec = await _rec(deps, rec_id)
    assert rec.status == "UPLOADED"
    assert rec.config["transcription"]["status"] == "done" and rec.config["transcription"]["items"] >= 1
    assert rec.config["transcription"]["backend"] == "openai/whisper-1"
    assert len(stt_server.requests) == 3
    async with deps.sessions() as db:
        (item, *_) = await list_session(db, SESSION)
    assert abs(item.words[0].start - (SESSION_LEAD + phrases[0].onset)) < 0.15
    assert onset(alice) > 0.5


async def test_a_second_recording_of_the_same_tracks_adds_no_duplicates(settings: Settings, make_deps: Any) -> None:
    import shutil

    deps = await make_deps(settings)
    alice, _ = concatenate(ALICE[:1])
    first = await _meeting_recording(deps, {"alice": [(0.0, _48k(alice))]})
    async with deps.sessions() as db:
        rec = await db.get(Recording, first)
        assert rec is not None
        twin = Recording(
            app_id=rec.app_id,
            meeting_id=rec.meeting_id,
            session_id=SESSION,
            kind="track",
            status="UPLOADING",
            started_time=rec.started_time,
            stopped_time=rec.stopped_time,
            config={"api": "realtimekit"},
            output_file_name="",
        )
        db.add(twin)
        await db.commit()
        second = twin.id
    shutil.copytree(local_dir(settings, first), local_dir(settings, second))
    await recording_job(deps, first)
    async with deps.sessions() as db:
        before = await list_session(db, SESSION)
    assert before
    await recording_job(deps, second)
    twin_rec = await _rec(deps, second)
    assert twin_rec.status == "UPLOADED"
    assert twin_rec.config["transcription"]["status"] == "done" and twin_rec.config["transcription"]["items"] == 0
    async with deps.sessions() as db:
        assert [i.id for i in await list_session(db, SESSION)] == [i.id for i in before]
