"""Helpers: a recording in UPLOADING with track files on disk, as the recording engine leaves it."""

from __future__ import annotations

import os
from typing import Any

from roomtape.db.accounts import create_app_with_account
from roomtape.db.models import Meeting, Recording, TrackFile
from roomtape.jobs.deps import JobDeps
from roomtape.jobs.upload import local_dir


async def stopped_recording(
    deps: JobDeps, storage_config: dict[str, Any] | None = None, config: dict[str, Any] | None = None
) -> tuple[str, dict[str, bytes]]:
    async with deps.sessions() as db:
        creds = await create_app_with_account(db, "jobs")
        meeting = Meeting(app_id=creds.app_id, title="m")
        db.add(meeting)
        await db.flush()
        rec = Recording(
            app_id=creds.app_id,
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
