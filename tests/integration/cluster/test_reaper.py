"""The reaper on a real database: a dead node's recordings move on, its participants leave, once."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select

from roomtape.cluster.placement import DeadNode, LocalPlacement
from roomtape.cluster.reaper import Reaper
from roomtape.config import Settings
from roomtape.db import lifecycle
from roomtape.db.accounts import create_app_with_account
from roomtape.db.migrate import upgrade
from roomtape.db.models import Meeting, OutboxEvent, Participant, Recording, Session, SessionParticipant
from roomtape.jobs.deps import open_deps


class _Registry(LocalPlacement):
    """A registry in which node ``dead`` stopped heartbeating while it held one room; ``live`` runs."""

    distributed = True

    def __init__(self, room: str) -> None:
        super().__init__("reaper")
        self.dead = [DeadNode(id="dead", seen=time.time(), rooms=[room])]
        self.forgotten: list[str] = []

    async def live_node_ids(self) -> list[str]:
        return ["live", self.node_id]

    async def dead_nodes(self) -> list[DeadNode]:
        return list(self.dead)

    async def forget(self, node_id: str) -> None:
        self.forgotten.append(node_id)
        self.dead = [d for d in self.dead if d.id != node_id]


async def test_dead_node_recordings_and_room_move_on_once(tmp_path: Path) -> None:
    deps = await open_deps(Settings(data_dir=tmp_path, secret_key="r" * 40))
    await upgrade(deps.engine)
    async with deps.sessions() as db:
        app_id = (await create_app_with_account(db, "reaper")).app_id
        meeting = Meeting(app_id=app_id, title="m")
        db.add(meeting)
        await db.flush()
        person = Participant(meeting_id=meeting.id, custom_participant_id="p", preset_name="group_call_host")
        db.add(person)
        await db.flush()
        session, _ = await lifecycle.participant_joined(db, meeting, person)

        def rec(status: str, node: str, kind: str = "track") -> Recording:
            row = Recording(
                app_id=app_id,
                meeting_id=meeting.id,
                session_id=session.id,
                kind=kind,
                status=status,
                node_id=node,
                # A VideoSDK track recording: its failure is a participant-track-recording-failed webhook.
                config={"api": "videosdk"},
                participant_id=person.id,
                track_kind="audio",
            )
            db.add(row)
            return row

        running, stopped, elsewhere = (
            rec("RECORDING", "dead"),
            rec("UPLOADING", "dead", "composite"),
            rec("RECORDING", "live"),
        )
        await db.commit()
        ids = running.id, stopped.id, elsewhere.id
        meeting_id, session_id = meeting.id, session.id
    submitted: list[str] = []
    summaries: list[str] = []

    async def submit_upload(recording_id: str) -> None:
        submitted.append(recording_id)

    async def submit_summary(session_id: str) -> None:
        summaries.append(session_id)

    placement = _Registry(meeting_id)
    reaper = Reaper(placement, deps, tmp_path, submit_upload=submit_upload, submit_summary=submit_summary, interval=1.0)
    try:
        moved = await reaper.tick()
        assert moved == [ids[0]]  # only the dead node's running recording was interrupted
        assert await reaper.tick() == []  # the node is forgotten: nothing happens twice
        async with deps.sessions() as db:
            rows = {r.id: r for r in await db.scalars(select(Recording))}
            # Nothing was flushed for it here: ERRORED, with the crash path's reason, and no job.
            assert rows[ids[0]].status == "ERRORED"
            assert rows[ids[0]].stop_reason == {"reason": "INTERNAL_ERROR", "caller": {"type": "ORGANIZATION"}}
            assert rows[ids[2]].status == "RECORDING"  # a live node's recording is left alone
            stays = list(await db.scalars(select(SessionParticipant)))
            assert len(stays) == 1 and stays[0].left_at is not None
            assert (await db.get(Session, session_id)).status == "ENDED"  # type: ignore[union-attr]
            events = [e.event for e in await db.scalars(select(OutboxEvent))]
        # The stopped composite the dead node never handed to its jobs is submitted; the ERRORED one is not.
        assert submitted == [ids[1]]
        assert placement.forgotten == ["dead"]
        assert summaries == [session_id]
        assert events.count("meeting.participantLeft") == 1 and events.count("meeting.ended") == 1
        assert events.count("participant-track-recording-failed") == 1
    finally:
        await deps.engine.dispose()
