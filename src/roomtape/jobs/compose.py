"""The compose step of a composite recording's job: render the composite, once, before the upload.

A composite recording that stopped is ``UPLOADING`` with its track files on disk and
``config["progress"]["done"]`` unset until its composite is rendered. Whoever runs the recording's job —
the server's in-process runner or a ``roomtape worker`` — calls :func:`render_pending` before
:func:`~roomtape.jobs.upload.upload_recording`: it renders what is missing (with
:meth:`roomtape.recording.meeting.MeetingRecordings.render`, the same code the server uses) and does
nothing for a recording already rendered, so the step is idempotent. A render interrupted by a crash left
only a temporary ``.part`` file, which the next run replaces.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, cast

from roomtape.db.models import Recording
from roomtape.jobs.deps import JobDeps

if TYPE_CHECKING:
    from roomtape.media.plane import MediaPlane
    from roomtape.recording.service import RecordingService

log = logging.getLogger(__name__)


def needs_render(rec: Recording) -> bool:
    """Whether ``rec`` is a stopped composite whose composite file is not rendered yet."""
    progress = rec.config.get("progress") if isinstance(rec.config, dict) else None
    done = isinstance(progress, dict) and bool(progress.get("done"))
    return rec.kind == "composite" and rec.status == "UPLOADING" and not done


async def _no_upload(recording_id: str) -> None:
    """The renderer never submits: the job that called it uploads next."""


async def render_pending(deps: JobDeps, recording_id: str) -> bool:
    """Render the recording's composite if it still needs one.

    Args:
        deps: Settings, database and keys.
        recording_id: The recording.

    Returns:
        False if the render failed for good (the recording is then ``ERRORED`` with the reason and a
        ``recording.statusUpdate`` / VideoSDK ``recording-failed`` is queued); True otherwise.
    """
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None or not needs_render(rec):
            return True
    from roomtape.recording.meeting import MeetingRecordings, emit_status

    # Rendering needs neither the recording service nor the media plane (a worker has neither).
    renderer = MeetingRecordings(deps, cast("RecordingService", None), cast("MediaPlane", None), _no_upload)
    try:
        log.info("recording %s: rendering the composite", recording_id)
        await renderer.render(recording_id)
    except Exception as exc:
        log.exception("composite of recording %s failed", recording_id)
        async with deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is not None and rec.status == "UPLOADING":
                rec.status = "ERRORED"
                rec.error = f"composite failed: {exc}"[:2000]
                emit_status(db, rec, "recording-failed")
                await db.commit()
        return False
    finally:
        await renderer.aclose()
    return True
