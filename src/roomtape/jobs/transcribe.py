"""The transcribe step of a recording's job: every participant's recorded audio into the session's transcript.

Segment by segment, after the composite is rendered and before the upload deletes the local files. A session
that was transcribed live (:mod:`roomtape.jobs.transcribe_live`: every meeting that asks for transcription,
recorded or not, since its audio is spooled and transcribed while the meeting goes on) is not transcribed
again here: the recording shows the live segments' progress instead. What follows is the path of sessions
without live transcription (recorded before it existed, or recovered from files).

Turned on per meeting by RealtimeKit's ``transcribe_on_end`` or an ``ai_config.transcription`` object (its
``language`` and ``keywords`` go to the backend), or for every meeting by ``ROOMTAPE_TRANSCRIBE_ALL_MEETINGS``.
Each audio segment (one continuous stretch of one participant's track, found through the timing manifests) is
decoded and transcribed off the event loop (PyAV and PocketSphinx run in worker threads; the HTTP backend is
plain asyncio I/O). Its words become items (:mod:`roomtape.transcripts.stt.utterances`) with the participant
as speaker, times on the session clock and word timings; they land in the transcript store, so every export,
the dashboard and ``meeting.transcript`` (queued again, with the next ``revision``, once the session has
ended) carry them. The agent of an agent session (``channel_map.agent_participant_id``) is not transcribed:
its own transcript already says what it said.

Progress is kept on the recording, in ``config["transcription"]`` and returned by the API as
``transcription``: ``status`` (``running`` → ``done`` | ``failed``), ``backend``, ``segments``,
``segments_done``, ``segments_failed``, ``items`` and ``error``. A backend that is down or answers garbage is
retried with backoff (``stt_max_attempts``, ``stt_backoff_base_secs``); when it still fails the
transcription is ``failed`` with the reason, and the recording goes on to upload as usual — a transcript
never costs a recording. Running the step again (after a crash) skips the segments already done; item ids
are stable per segment, so nothing is doubled. A segment whose stretch another recording of the session (a
composite and a track recording of the same participant) already transcribed is skipped too; two such jobs
running at the same moment can still both transcribe it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from roomtape.config import Settings
from roomtape.db.models import Meeting, Recording, Session, SessionParticipant
from roomtape.db.transcript_segments import has_segments, meeting_transcribed, refresh_recordings
from roomtape.jobs.deps import JobDeps
from roomtape.recording.compose.timeline import discover
from roomtape.recording.finalize import local_base
from roomtape.transcripts.ingest import on_session_ended
from roomtape.transcripts.links import TranscriptLinks
from roomtape.transcripts.store import add_items, list_session
from roomtape.transcripts.stt.audio import load_pcm
from roomtape.transcripts.stt.base import SpeechToText, SttError, SttOptions, Transcription
from roomtape.transcripts.stt.registry import stt_backend
from roomtape.transcripts.stt.utterances import segment_items

log = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], SpeechToText]


def transcription_options(meeting: Meeting | None, settings: Settings) -> SttOptions | None:
    """The backend hints if the meeting is to be transcribed, else ``None``."""
    if meeting is None or not meeting_transcribed(meeting, settings.transcribe_all_meetings):
        return None
    ai = (meeting.ai_config or {}).get("transcription")
    ai = ai if isinstance(ai, dict) else {}
    raw_keywords = ai.get("keywords")
    keywords: list[Any] = raw_keywords if isinstance(raw_keywords, list) else []
    language = ai.get("language") if isinstance(ai.get("language"), str) else None
    return SttOptions(language=language, keywords=tuple(str(k) for k in keywords))


def retry_delay(settings: Settings, attempt: int) -> float:
    """Seconds before attempt ``attempt + 1`` (``attempt`` ≥ 1 failures so far): base, doubling."""
    return float(settings.stt_backoff_base_secs * 2 ** min(attempt - 1, 10))


async def transcribe_file(settings: Settings, backend: SpeechToText, path: Path, options: SttOptions) -> Transcription:
    """One segment file, decoded in a thread, retried with backoff while the failure is retryable.

    Raises:
        SttError: Not retryable, or still failing after ``stt_max_attempts``.
    """
    audio = await asyncio.to_thread(load_pcm, path)
    attempt = 0
    while True:
        attempt += 1
        try:
            return await backend.transcribe(audio, options)
        except SttError as exc:
            if not exc.retryable or attempt >= settings.stt_max_attempts:
                raise
            delay = retry_delay(settings, attempt)
            log.warning("speech-to-text of %s failed (%s); retry %d in %.1f s", path.name, exc, attempt, delay)
            await asyncio.sleep(delay)


async def _save_progress(deps: JobDeps, recording_id: str, progress: dict[str, Any]) -> None:
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is not None:
            rec.config = {**rec.config, "transcription": dict(progress)}
            await db.commit()


async def transcribe_pending(deps: JobDeps, recording_id: str, factory: BackendFactory = stt_backend) -> None:
    """Transcribe the recording's audio if its meeting wants it and it is not done yet. Never raises.

    Only a stopped recording (``UPLOADING``, files still local) is transcribed; see the module docstring.
    """
    try:
        await _transcribe(deps, recording_id, factory)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a transcript must never stop the upload
        log.exception("transcription of recording %s failed", recording_id)
        await _save_progress(deps, recording_id, {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:500]})


async def _transcribe(deps: JobDeps, recording_id: str, factory: BackendFactory) -> None:
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None or rec.status != "UPLOADING" or rec.session_id is None:
            return
        if await has_segments(db, rec.session_id):
            # Transcribed live, segment by segment (roomtape.jobs.transcribe_live): show that progress here,
            # always recomputed (a "done" stored during the meeting may predate the last segments).
            await refresh_recordings(db, rec.session_id)
            await db.commit()
            return
        progress: dict[str, Any] = dict(rec.config.get("transcription") or {})
        if progress.get("status") in ("done", "failed"):
            return
        options = transcription_options(await db.get(Meeting, rec.meeting_id), deps.settings)
        session = await db.get(Session, rec.session_id)
        if options is None or session is None:
            return
        session_id, session_start = session.id, session.started_at.timestamp()
        agent = (rec.config.get("compose") or {}).get("agent_participant_id")
        names = {
            s.participant_id: s.display_name
            for s in await db.scalars(select(SessionParticipant).where(SessionParticipant.session_id == session_id))
        }
        base = local_base(deps.settings.data_dir, rec)
        # What another recording of this session (a composite and track recordings of the same tracks) already
        # transcribed: those stretches are skipped, not transcribed twice.
        mine = f"stt-{recording_id}-"
        covered = [
            (i.participant_id, i.start_epoch, i.end_epoch)
            for i in await list_session(db, session_id)
            if i.source == "stt" and not i.id.startswith(mine) and i.start_epoch is not None
        ]
    segments = [
        (p.participant_id, seg)
        for p in await asyncio.to_thread(discover, base, [session_id])
        if p.participant_id != agent
        for seg in p.segments.get("audio", [])
    ]
    done: list[str] = list(progress.get("done") or [])
    backend = factory(deps.settings)
    progress.update(
        status="running",
        backend=backend.name,
        segments=len(segments),
        segments_done=len(done),
        segments_failed=0,
        items=int(progress.get("items") or 0),
        error=None,
        done=done,
    )
    if not segments:
        progress["note"] = "no audio recorded"
    await _save_progress(deps, recording_id, progress)
    try:
        for participant_id, segment in segments:
            key = segment.path.relative_to(base).as_posix()
            if key in done:
                continue
            seg_start, seg_end = segment.start_ms / 1000, segment.end_ms / 1000
            if any(
                pid == participant_id and start < seg_end and (end or start) > seg_start for pid, start, end in covered
            ):
                done.append(key)
                progress["segments_done"] = len(done)
                progress["note"] = "some segments were transcribed with another recording of the session"
                continue
            try:
                heard = await transcribe_file(deps.settings, backend, segment.path, options)
            except SttError as exc:
                progress["segments_failed"] += 1
                progress["error"] = exc.message[:500]
                log.error("speech-to-text of recording %s, %s failed: %s", recording_id, key, exc.message)
                if exc.retryable:  # the backend is down or broken: the next segments would fare no better
                    break
                continue
            items = segment_items(
                heard,
                item_prefix=f"stt-{recording_id}-{key}",
                session_id=session_id,
                session_start_epoch=session_start,
                segment_start_epoch=segment.start_ms / 1000,
                participant_id=participant_id,
                speaker_id=names.get(participant_id),
                now=time.time(),
            )
            done.append(key)
            progress["segments_done"] = len(done)
            progress["items"] += len(items)
            async with deps.sessions() as db:
                rec = await db.get(Recording, recording_id)
                if rec is None:
                    return
                await add_items(db, rec.app_id, items)
                rec.config = {**rec.config, "transcription": dict(progress)}
                await db.commit()
    finally:
        await backend.aclose()
    progress["status"] = "failed" if progress["segments_failed"] else "done"
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None:
            return
        rec.config = {**rec.config, "transcription": dict(progress)}
        if progress["items"]:
            links = TranscriptLinks(deps.secret_key, deps.settings.resolved_public_url)
            await on_session_ended(db, session_id, links=links, link_ttl_secs=deps.settings.download_url_ttl_secs)
        await db.commit()
    log.info(
        "recording %s transcribed: %s, %d items from %d/%d segments",
        recording_id,
        progress["status"],
        progress["items"],
        progress["segments_done"],
        progress["segments"],
    )
