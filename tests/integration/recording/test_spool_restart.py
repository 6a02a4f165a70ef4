"""A media node that restarts puts in the spool what its disk still holds of stopped recordings (a crash or a
spool outage after the stop), and a job on another data directory then finds every file."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import av
from sqlalchemy import select
from tests.integration.jobs.recordings import stopped_recording
from tests.integration.media.roomtape_media_peers import read_counter
from tests.integration.recording.recording_server import live_server, wait_for
from tests.integration.recording.test_recording_crash import run_and_kill

from roomtape.config import Settings
from roomtape.db.models import Recording, TrackFile
from roomtape.jobs.deps import WorkerDeps, open_deps
from roomtape.jobs.upload import local_dir
from roomtape.recording.finalize import prepare_upload
from roomtape.recording.spool import SPOOLED, Shipper, fetch, hand_over, keep_spooled, purge


async def _node(tmp_path: Path, name: str) -> WorkerDeps:
    """A host's view: its own data directory; the database and the spool (a directory here) are shared."""
    settings = Settings(
        data_dir=tmp_path / name,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'roomtape.db'}",
        secret_key="s" * 40,
        spool_url=f"file://{tmp_path / 'spool'}",
    )
    return await open_deps(settings)


async def test_flush_pending_at_start_up_then_fetch_elsewhere_then_purge(tmp_path: Path) -> None:
    spool_dir = tmp_path / "spool"
    media, worker = await _node(tmp_path, "media"), await _node(tmp_path, "worker")
    try:
        rid, files = await stopped_recording(media)
        tracks = sorted(rel for rel in files if "/audio/" in rel or "/video/" in rel)
        # Left on the media node's disk by a previous process; one segment was already sent while recording.
        spooled_early = spool_dir / rid / tracks[0]
        spooled_early.parent.mkdir(parents=True)
        spooled_early.write_bytes(files[tracks[0]])
        for rel in tracks:  # the manifests the recorder writes beside the segments
            (local_dir(media.settings, rid) / rel).with_name("manifest.json").write_text('{"version": 1}')

        shipper = Shipper.from_settings(media.settings)
        try:
            await shipper.flush_pending(media.sessions, media.settings.data_dir)
        finally:
            await shipper.aclose()
        async with media.sessions() as db:
            rec = await db.get(Recording, rid)
            assert rec is not None and rec.config[SPOOLED] is True
        for rel in tracks:
            assert (spool_dir / rid / rel).read_bytes() == files[rel]
            assert (spool_dir / rid / rel).with_name("manifest.json").is_file()
            assert not (local_dir(media.settings, rid) / rel).exists()  # spooled, so removed locally

        await fetch(worker, rid)
        for rel in tracks:
            assert (local_dir(worker.settings, rid) / rel).read_bytes() == files[rel]
            assert (local_dir(worker.settings, rid) / rel).with_name("manifest.json").is_file()

        await purge(worker, rid)  # still UPLOADING: kept
        assert (spool_dir / rid / tracks[0]).is_file()
        async with media.sessions() as db:
            rec = await db.get(Recording, rid)
            assert rec is not None
            rec.status = "UPLOADED"
            await db.commit()
        await purge(worker, rid)
        assert not any(p.is_file() for p in spool_dir.rglob("*"))
    finally:
        await media.engine.dispose()
        await worker.engine.dispose()


async def test_a_job_waits_until_the_media_node_has_spooled(tmp_path: Path) -> None:

    media, worker = await _node(tmp_path, "media"), await _node(tmp_path, "worker")
    try:
        rid, files = await stopped_recording(media)
        job = asyncio.create_task(fetch(worker, rid))
        await asyncio.sleep(1.0)
        assert not job.done()  # not spooled yet: waiting, not failing
        shipper = Shipper.from_settings(media.settings)
        try:
            assert await shipper.flush(media.sessions, media.settings.data_dir, rid)
        finally:
            await shipper.aclose()
        await asyncio.wait_for(job, 15)
        audio = next(rel for rel in files if "/audio/" in rel)
        assert (local_dir(worker.settings, rid) / audio).read_bytes() == files[audio]
    finally:
        await media.engine.dispose()
        await worker.engine.dispose()


async def test_a_dead_nodes_recording_goes_on_with_what_reached_the_spool(tmp_path: Path) -> None:
    media, worker = await _node(tmp_path, "media"), await _node(tmp_path, "worker")
    try:
        rid, files = await stopped_recording(media)
        tracks = sorted(rel for rel in files if "/audio/" in rel or "/video/" in rel)
        shipped = tmp_path / "spool" / rid / tracks[0]  # closed and sent before the host was lost
        shipped.parent.mkdir(parents=True)
        shipped.write_bytes(files[tracks[0]])
        # The media host is gone with its disk: nothing flushes. The job waits, until the node is declared dead.
        assert await keep_spooled(worker, rid) == 1
        assert await keep_spooled(worker, rid) == 0  # once
        async with worker.sessions() as db:
            rec = await db.get(Recording, rid)
            assert rec is not None and rec.config[SPOOLED] is True
            rows = {r.path: r.status for r in await db.scalars(select(TrackFile).where(TrackFile.recording_id == rid))}
        assert rows == {tracks[0]: "complete", tracks[1]: "failed"}
        await fetch(worker, rid)
        assert (local_dir(worker.settings, rid) / tracks[0]).read_bytes() == files[tracks[0]]
        assert not (local_dir(worker.settings, rid) / tracks[1]).exists()
    finally:
        await media.engine.dispose()
        await worker.engine.dispose()


async def test_sigkill_while_recording_with_a_spool_then_restart_spools_the_rest(tmp_path: Path) -> None:
    """A real server records into 1 s segments with a spool, is SIGKILLed, starts again: what was sent before
    the kill stays, the rest (repaired) follows at start-up, the job reads it all back from the spool."""
    spool = tmp_path / "spool"
    extra = {"ROOMTAPE_SPOOL_URL": f"file://{spool}", "ROOMTAPE_SEGMENT_MAX_SECONDS": "1"}
    info, last = await asyncio.to_thread(run_and_kill, tmp_path, extra)
    counter_at_kill = int(last.split()[0])
    ids: dict[str, str] = dict(info["ids"])  # type: ignore[call-overload]
    sent_before = {rid: sorted(p.name for p in (spool / rid).rglob("*.webm")) for rid in ids.values()}
    assert all(len(names) >= 1 for names in sent_before.values()), sent_before  # shipped while recording

    async with live_server(tmp_path, spool_url=f"file://{spool}", segment_max_seconds=1.0) as srv:
        for rid in ids.values():
            await wait_for(lambda rid=rid: _status_in(srv, rid, ("UPLOADED", "ERRORED")), 30, "upload")
            recording = await srv.recording(rid)
            assert recording.status == "UPLOADED", recording.error
            assert recording.config[SPOOLED] is True
        video = await srv.files(ids["video"])
        video_rec = await srv.recording(ids["video"])
    assert not list(spool.rglob("*.webm"))  # purged once UPLOADED
    assert len(video) >= 3 and all(f.status == "uploaded" for f in video)
    stored = tmp_path / "storage" / video_rec.app_id
    counters: list[int] = []
    for f in sorted(video, key=lambda f: f.index):
        with av.open(str(stored / f.path)) as container:
            got = [read_counter(frame) for frame in container.decode(video=0)]
        assert len(got) == f.frames
        counters += got
    assert all(b > a for a, b in itertools.pairwise(counters))  # in order across the pieces
    assert counters[-1] - counters[0] + 1 - len(counters) <= 3  # nothing missing between them
    assert counters[-1] >= counter_at_kill - 1.5 * 30  # at most 1.5 s lost at the kill, as without a spool


async def _status_in(srv: Any, rid: str, statuses: tuple[str, ...]) -> bool:
    return (await srv.recording(rid)).status in statuses


async def test_recordings_retry_on_another_host_reads_the_spool(tmp_path: Path) -> None:
    """``roomtape recordings retry`` of an ERRORED upload, run where the files never were: fetched, uploaded."""
    media = await _node(tmp_path, "media")
    try:
        rid, files = await stopped_recording(media)
        shipper = Shipper.from_settings(media.settings)
        try:
            assert await shipper.flush(media.sessions, media.settings.data_dir, rid)
        finally:
            await shipper.aclose()
        async with media.sessions() as db:
            rec = await db.get(Recording, rid)
            assert rec is not None
            rec.status, rec.error = "ERRORED", "storage refused"
            await db.commit()
            app_id = rec.app_id
        env = {
            **os.environ,
            "ROOMTAPE_DATA_DIR": str(tmp_path / "elsewhere"),
            "ROOMTAPE_DATABASE_URL": str(media.settings.database_url),
            "ROOMTAPE_SECRET_KEY": "s" * 40,
            "ROOMTAPE_SPOOL_URL": f"file://{tmp_path / 'spool'}",
            "ROOMTAPE_STORAGE_URL": f"file://{tmp_path / 'bucket'}",
        }
        out = await asyncio.to_thread(
            subprocess.run,
            [str(Path(sys.executable).parent / "roomtape"), "recordings", "retry", rid],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout.strip() == "UPLOADED", out.stdout + out.stderr
        for rel in (r for r in files if "/audio/" in r or "/video/" in r):
            assert (tmp_path / "bucket" / app_id / rel).read_bytes() == files[rel]
        assert not any(p.is_file() for p in (tmp_path / "spool").rglob("*"))  # purged once UPLOADED
    finally:
        await media.engine.dispose()


async def test_hand_over_a_dead_nodes_recording_from_its_host_or_from_elsewhere(tmp_path: Path) -> None:
    """The reaper's step: files on this host (a shared data dir) are flushed from here; files on the dead
    node's own host are out of reach, so what reached the spool is kept and the track recording is made final
    from it (not ERRORED because nothing is here)."""
    media, reaper_elsewhere = await _node(tmp_path, "media"), await _node(tmp_path, "elsewhere")
    try:
        here, files = await stopped_recording(media)
        await hand_over(media, here)  # the recovering process shares the data dir
        tracks = sorted(rel for rel in files if "/audio/" in rel or "/video/" in rel)
        assert all((tmp_path / "spool" / here / rel).read_bytes() == files[rel] for rel in tracks)
        assert await prepare_upload(media.sessions, media.settings.data_dir, here)

        away, files = await stopped_recording(media)
        tracks = sorted(rel for rel in files if "/audio/" in rel or "/video/" in rel)
        shipped = tmp_path / "spool" / away / tracks[0]
        shipped.parent.mkdir(parents=True)
        shipped.write_bytes(files[tracks[0]])
        await hand_over(reaper_elsewhere, away)
        assert await prepare_upload(reaper_elsewhere.sessions, reaper_elsewhere.settings.data_dir, away)
        async with media.sessions() as db:
            rows = {r.path: r.status for r in await db.scalars(select(TrackFile).where(TrackFile.recording_id == away))}
            rec = await db.get(Recording, away)
            assert rec is not None and rec.status == "UPLOADING"
        assert rows == {tracks[0]: "complete", tracks[1]: "failed"}
    finally:
        await media.engine.dispose()
        await reaper_elsewhere.engine.dispose()
