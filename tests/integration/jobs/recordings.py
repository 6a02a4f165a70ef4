"""Helpers: a recording in UPLOADING with track files on disk, as the recording engine leaves it."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import Meeting, Recording, TrackFile
from roomtape.jobs.deps import JobDeps
from roomtape.jobs.upload import local_dir


async def stopped_recording(
    deps: JobDeps,
    storage_config: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    app_id: str | None = None,
) -> tuple[str, dict[str, bytes]]:
    """A track recording in UPLOADING with its files on disk, of ``app_id`` (a new app by default)."""
    async with deps.sessions() as db:
        if app_id is None:
            app_id = (await create_app_with_account(db, "jobs")).app_id
        meeting = Meeting(app_id=app_id, title="m")
        db.add(meeting)
        await db.flush()
        rec = Recording(
            app_id=app_id,
            meeting_id=meeting.id,
            session_id="s1",
            kind="track",
            status="UPLOADING",
            output_file_name="composite.webm",
            config=config or {},
            storage_config=deps.box.seal_fields(storage_config) if storage_config else None,
        )
        db.add(rec)
        await db.flush()
        base = local_dir(deps.settings, rec.id)
        files = {
            "s1/p1/audio/0001.webm": os.urandom(300_000),
            "s1/p1/video/0001.webm": os.urandom(700_000),
            "composite.webm": os.urandom(200_000),
            "s1/manifest.json": b'{"tracks": 2}',
        }
        for rel, data in files.items():
            (base / rel).parent.mkdir(parents=True, exist_ok=True)
            (base / rel).write_bytes(data)
        for i, rel in enumerate(files):
            if "/audio/" in rel or "/video/" in rel:
                db.add(
                    TrackFile(
                        recording_id=rec.id,
                        session_id="s1",
                        participant_id="p1",
                        kind=rel.split("/")[2],
                        index=i,
                        codec="opus",
                        path=rel,
                        size=len(files[rel]),
                        status="complete",
                    )
                )
        await db.commit()
        return rec.id, files


async def stopped_composite(deps: JobDeps, seconds: float = 12.0) -> tuple[str, str]:
    """A composite recording as a stop leaves it: UPLOADING, real VP8/Opus track files, not rendered yet.

    Returns the recording id and its app id.
    """
    from datetime import UTC, datetime, timedelta

    from tests.integration.recording.compose_media import (
        SESSION,
        T0,
        record_audio,
        record_video,
        solid,
        tone,
    )

    from roomtape.recording.meeting import derive_compose

    compose, _ = derive_compose(video_config={"width": 640, "height": 360})
    started = datetime.fromtimestamp(T0, UTC)
    async with deps.sessions() as db:
        creds = await create_app_with_account(db, "compose")
        meeting = Meeting(app_id=creds.app_id, title="m")
        db.add(meeting)
        await db.flush()
        rec = Recording(
            app_id=creds.app_id,
            meeting_id=meeting.id,
            session_id=SESSION,
            kind="composite",
            status="UPLOADING",
            started_time=started,
            stopped_time=started + timedelta(seconds=seconds),
            config={"api": "realtimekit", "compose": compose, "pauses": []},
        )
        db.add(rec)
        await db.flush()
        rec.output_file_name = f"{rec.id}.mp4"
        base = local_dir(deps.settings, rec.id)
        record_video(base, "alice", lambda i: solid((200, 30, 30), 320, 240), [(0, seconds)])
        record_audio(base, "alice", tone(440, seconds), [(0, seconds)])
        record_video(base, "bob", lambda i: solid((30, 30, 200), 320, 240), [(0, seconds)])
        record_audio(base, "bob", tone(1000, seconds), [(0, seconds)])
        await db.commit()
        return rec.id, creds.app_id


def stop_worker(worker: subprocess.Popen[bytes]) -> None:
    """SIGTERM a ``roomtape worker`` (it finishes its job's step and exits 0); SIGKILL it after 15 s."""
    if worker.poll() is not None:
        return
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(15)
    except subprocess.TimeoutExpired:
        worker.kill()
