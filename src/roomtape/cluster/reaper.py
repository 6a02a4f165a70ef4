"""A node died: mark its rooms lost and move its recordings on, from whichever process notices first.

Every process runs a :class:`Reaper`. Each tick (a quarter of the heartbeat TTL) it asks the placement for
dead nodes; when there are some, the process holding the deployment's recovery lock:

1. recovers every running recording no live node writes (:func:`roomtape.recording.startup.
   recover_interrupted`, the crash-repair path: half-written files are finalized from what was flushed,
   ``stop_reason INTERNAL_ERROR``, one ``recording.statusUpdate``/VideoSDK event each); with a spool
   (workers on other hosts, :mod:`roomtape.recording.spool`) it keeps what reached the spool
   (:func:`~roomtape.recording.spool.hand_over`: the dead node never flushes); then it submits their jobs
   (render, upload, webhooks) to the job runner;
2. for each room of a dead node, records the leave of the participants who were on it and ends the session
   if nobody rejoined elsewhere (``meeting.ended``);
3. forgets the node, so its rooms are placed afresh at the next join.

The lock and the database state (only INVOKED/RECORDING/PAUSED rows are recovered) keep each of these to
one process and one time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import or_, select

from roomtape.cluster.placement import DeadNode, Placement
from roomtape.db import lifecycle
from roomtape.db.models import Recording
from roomtape.db.transcript_segments import close_interrupted
from roomtape.jobs.deps import JobDeps
from roomtape.jobs.recording import segment_ids
from roomtape.recording.finalize import prepare_upload
from roomtape.recording.spool import hand_over
from roomtape.recording.startup import recover_interrupted

__all__ = ["Reaper"]

log = logging.getLogger(__name__)

Submit = Callable[[str], Awaitable[None]]


class Reaper:
    """Moves dead nodes' rooms and recordings on (see the module docstring).

    Args:
        placement: The process's placement backend.
        deps: Settings and database (the server context).
        data_dir: Where the dead node's files are if they are on this host (a data directory shared by the
            nodes of one host); otherwise what reached the spool is kept.
        submit_upload: The job runner's ``submit_upload`` (render, upload and webhooks of a recording).
        submit_summary: The job runner's ``submit_summary`` for a session that ended.
        submit_transcription: The job runner's ``submit_transcription`` for the dead node's open live
            transcription segments (queued as they are).
        interval: Seconds between two looks at the registry.
    """

    def __init__(
        self,
        placement: Placement,
        deps: JobDeps,
        data_dir: Path,
        *,
        submit_upload: Submit,
        submit_summary: Submit,
        submit_transcription: Submit | None = None,
        interval: float,
    ) -> None:
        self._placement = placement
        self._deps = deps
        self._sessions = deps.sessions
        self._data_dir = data_dir
        self._submit_upload = submit_upload
        self._submit_summary = submit_summary
        self._submit_transcription = submit_transcription
        self._interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start looking."""
        self._task = asyncio.create_task(self._run(), name="roomtape-reaper")

    async def aclose(self) -> None:
        """Stop looking."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self.tick()
            except Exception:  # Redis or the database away for a moment: look again next tick
                log.exception("reaper: tick failed")

    async def tick(self) -> list[str]:
        """One look: recover what dead nodes left, if there are any and this process holds the lock.

        Returns:
            Ids of the recordings moved on.
        """
        if not await self._placement.dead_nodes():
            return []
        async with self._placement.recovery_lock() as held:
            if not held:
                return []
            dead = await self._placement.dead_nodes()  # again, under the lock: another process may have done it
            if not dead:
                return []
            live = await self._placement.live_node_ids()
            recovered = await recover_interrupted(self._sessions, self._data_dir, self._make_final, live_nodes=live)
            async with self._sessions() as db:  # the dead node's open live transcription segments: queued
                reopened = await close_interrupted(db, live)
                await db.commit()
            if reopened and self._submit_transcription is not None:
                for segment_id in await segment_ids(self._deps):
                    await self._submit_transcription(segment_id)
            async with self._sessions() as db:
                # Also what a dead node had stopped but not handed to the jobs yet (a stop in its shutdown
                # runs after its job runner stopped): resubmitting a job is harmless, it is idempotent.
                dead_ids = [n.id for n in dead]
                uploading = list(
                    await db.scalars(
                        select(Recording.id).where(
                            or_(Recording.id.in_(recovered), Recording.node_id.in_(dead_ids)),
                            Recording.status == "UPLOADING",
                        )
                    )
                )
            for recording_id in uploading:
                await hand_over(self._deps, recording_id)
                await self._submit_upload(recording_id)
            for node in dead:
                await self._rooms_lost(node)
                await self._placement.forget(node.id)
            log.warning(
                "reaper: node(s) %s died; %d recording(s) moved on (%d to upload)",
                ", ".join(n.id for n in dead),
                len(recovered),
                len(uploading),
            )
            return recovered

    async def _make_final(self, recording_id: str) -> None:
        # Spooled first: a track recording whose files are on the dead node's host is then made final from
        # what reached the spool, instead of losing every file that is not here.
        await hand_over(self._deps, recording_id)
        await prepare_upload(self._sessions, self._data_dir, recording_id)

    async def _rooms_lost(self, node: DeadNode) -> None:
        seen = datetime.fromtimestamp(node.seen, UTC)
        for meeting_id in node.rooms:
            async with self._sessions() as db:
                session = await lifecycle.leave_lost(db, meeting_id, seen)
                ended = session is not None and await lifecycle.end_session_if_idle(db, session.id)
                await db.commit()
            if session is not None and ended:
                log.warning("meeting %s: session %s ended with node %s", meeting_id, session.id, node.id)
                await self._submit_summary(session.id)
