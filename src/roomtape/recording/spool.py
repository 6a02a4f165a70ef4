"""The spool: where track files wait between the media node that wrote them and the job that renders them.

With it a ``roomtape worker`` on another host needs no shared filesystem.

A media node writes segments under its own ``{data_dir}/recordings/{recording_id}/`` as always. With
``ROOMTAPE_SPOOL_URL`` set (any storage backend: an S3-compatible bucket, GCS, Azure, SFTP, a directory):

- while the recording runs, each segment is uploaded once it closes, with its manifest, by the
  :class:`Shipper`'s background senders (four at a time, each retried with backoff while the spool is down).
  The live path only queues a path, at a segment's close; the upload runs in the backend's thread, off the
  event loop.
  ``ROOMTAPE_SEGMENT_MAX_SECONDS`` makes long tracks close a segment every so often, so they arrive in pieces
  while the meeting runs;
- after the stop, :meth:`Shipper.flush` uploads whatever the spool still lacks (the last segments, every
  manifest, and the composite the media node rendered live, :func:`rendered_files`), marks the recording
  ``config["spooled"]`` and deletes the local copies. A node that restarts flushes its stopped recordings again
  (:meth:`Shipper.flush_pending`): a crash or an outage loses nothing that reached the disk;
- the recording's job, on any host, first calls :func:`fetch`: it waits until the recording is spooled, then
  downloads the track files, manifests and any live-rendered composite into its own data directory, where the
  composer (only if no composite came), the transcriber and the upload read them as before. Once the recording
  is UPLOADED, :func:`purge` deletes the spooled copies (deleting the recording does too).

A media node that is gone for good never flushes: whoever declares it dead calls :func:`hand_over` for its
recordings (once recovery stopped them): if their files are on this host (a shared data directory) it flushes
them from here; if not, :func:`keep_spooled` keeps what reached the spool (every closed segment, so at most
``segment_max_seconds`` per track is lost), marks the rest lost, and the job goes on.

Keys: ``{spool prefix}/{recording_id}/{session}/{participant}/{kind}/{file}``, the local layout.

Without ``ROOMTAPE_SPOOL_URL`` the data directory is the spool: every call here returns at once and jobs read
the files where they were written (one host, or a shared data directory), as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePosixPath
from typing import Final

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape.config import Settings
from roomtape.db.models import Recording, TrackFile
from roomtape.errors import NotFound, RoomtapeError, Unavailable
from roomtape.jobs.deps import JobDeps
from roomtape.recording.finalize import recording_dir
from roomtape.recording.manifest import MANIFEST_NAME
from roomtape.storage.base import StorageBackend, download_file, join_key
from roomtape.storage.registry import build_backend, parse_storage_url
from roomtape.storage.signer import DownloadSigner

__all__ = [
    "SPOOLED",
    "Shipper",
    "fetch",
    "hand_over",
    "keep_spooled",
    "purge",
    "rendered_files",
    "spool_key",
    "spool_storage",
    "spooled_files",
]

log = logging.getLogger(__name__)

SPOOLED: Final = "spooled"
"""Key of ``Recording.config`` set once every kept file of the stopped recording is in the spool."""

_RETRY_MAX_SECONDS: Final = 10.0  # short: after an outage the spool should catch up within seconds
_SENDERS: Final = 4  # uploads at a time: a remote bucket's round trips (PUT, then HEAD) would queue up one by one


def _retry_delay(attempt: int) -> float:
    return float(min(_RETRY_MAX_SECONDS, 0.25 * 2 ** min(attempt, 10)))


def spool_storage(settings: Settings) -> tuple[StorageBackend, str] | None:
    """The spool's backend and key prefix, or None when the data directory is the spool (no ``spool_url``)."""
    if not settings.spool_url:
        return None
    config = parse_storage_url(
        settings.spool_url,
        access_key=settings.spool_access_key,
        secret=settings.spool_secret,
        setting="ROOMTAPE_SPOOL_URL",
    )
    # The spool never hands out download URLs; local and SFTP backends take a signer all the same.
    signer = DownloadSigner("roomtape-spool", "")
    backend = build_backend(config, signer=signer, scope="spool", data_dir=settings.data_dir)
    return backend, str(config.get("prefix") or "")


def spool_key(prefix: str, recording_id: str, relative: str) -> str:
    """The spool key of a recording's file at ``relative`` (a ``TrackFile.path`` or a manifest)."""
    return join_key(prefix, recording_id, relative)


def spooled_files(rows: Iterable[TrackFile]) -> list[str]:
    """The files a recording's job needs, relative to its directory: the rows' segments and their manifests."""
    names = {r.path for r in rows}
    names |= {str(PurePosixPath(p).parent / MANIFEST_NAME) for p in list(names)}
    return sorted(names)


def rendered_files(rec: Recording) -> list[str]:
    """The composite (and its audio export) a media node rendered live, relative to the recording's directory.

    Spooled beside the track files, so the job on another host uploads them instead of rendering again; empty
    until the live render has finished (``config.composite.live``), and for recordings rendered after the stop.
    """
    composite = rec.config.get("composite") if isinstance(rec.config, dict) else None
    if rec.kind != "composite" or not isinstance(composite, dict) or "live" not in composite:
        return []
    names = [rec.output_file_name]
    audio = rec.config.get("audio_file_name")
    if audio:
        names.append(str(audio))
    return [n for n in names if n]


def _is_manifest(relative: str) -> bool:
    return PurePosixPath(relative).name == MANIFEST_NAME


async def _kept_rows(db: AsyncSession, recording_id: str) -> list[TrackFile]:
    """Rows whose file a job still needs (not lost in a crash, not already in the final storage)."""
    query = select(TrackFile).where(
        TrackFile.recording_id == recording_id, TrackFile.status.not_in(("failed", "uploaded"))
    )
    return list(await db.scalars(query))


async def _remote_size(backend: StorageBackend, key: str) -> int | None:
    try:
        return (await backend.stat(key)).size
    except NotFound:
        return None


class Shipper:
    """A media node's side of the spool: uploads closed segments while recording, flushes after the stop.

    Args:
        storage: The spool's backend and prefix (:func:`spool_storage`); None: the data directory is the spool
            and every method returns at once.
        senders: Uploads at a time.
    """

    def __init__(self, storage: tuple[StorageBackend, str] | None, senders: int = _SENDERS) -> None:
        self._backend: StorageBackend | None = storage[0] if storage is not None else None
        self._prefix = storage[1] if storage is not None else ""
        self._queue: dict[tuple[str, str], tuple[Path, int]] = {}  # insertion-ordered; value: (file, version)
        self._version = 0
        self._shipped: dict[tuple[str, str], int] = {}  # segment -> size in the spool
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._senders = max(1, senders)
        self._sending: set[tuple[str, str]] = set()  # taken by a sender (also while it waits to retry)
        self.failures = 0
        """Uploads that failed and were retried (the spool was down), for logs and tests."""

    @classmethod
    def from_settings(cls, settings: Settings) -> Shipper:
        """The shipper of ``settings.spool_url``."""
        return cls(spool_storage(settings))

    @property
    def pending(self) -> int:
        """Files queued and not in the spool yet (the one being sent included)."""
        return len(self._queue)

    @property
    def enabled(self) -> bool:
        """Whether files go to a spool (``spool_url`` set)."""
        return self._backend is not None

    def ship(self, recording_id: str, base_dir: Path, relatives: Sequence[str]) -> None:
        """Queue files of a recording for upload, oldest first, a few at a time (on the event loop; returns at once).

        Args:
            recording_id: The recording.
            base_dir: Its local directory.
            relatives: The files, relative to ``base_dir`` (a closed segment, then its manifest).
        """
        if self._backend is None or self._closing.is_set():
            return
        for rel in relatives:
            self._version += 1
            self._queue.pop((recording_id, rel), None)  # a manifest queued again goes after the new segment
            self._queue[(recording_id, rel)] = (base_dir / rel, self._version)
        self._wake.set()
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._run(), name=f"roomtape-spool-{i}") for i in range(self._senders)]

    async def _run(self) -> None:
        """One sender: takes the oldest file no other sender holds, and keeps it until it is in the spool."""
        while not self._closing.is_set():
            key = next((k for k in self._queue if k not in self._sending), None)
            if key is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            self._sending.add(key)
            try:
                await self._send(key)
            finally:
                self._sending.discard(key)

    async def _send(self, key: tuple[str, str]) -> None:
        attempt = 0
        while not self._closing.is_set() and key in self._queue:
            path, version = self._queue[key]
            try:
                await self._put(key[0], key[1], path)
            except Exception as exc:  # whatever it is, the file stays queued: nothing recorded is given up
                self.failures += 1
                log.warning("spool upload of %s/%s failed, retrying: %r", key[0], key[1], exc)
                await self._sleep(_retry_delay(attempt))
                attempt += 1
                continue
            if self._queue.get(key, (None, -1))[1] == version:
                del self._queue[key]  # not queued again (a newer manifest) while it was being sent

    async def _put(self, recording_id: str, rel: str, path: Path) -> None:
        assert self._backend is not None
        size = _size_of(path)
        if size is None:
            return  # flushed and removed meanwhile (flush sends what the spool lacks)
        stored = await self._backend.put_file(path, spool_key(self._prefix, recording_id, rel))
        if _is_manifest(rel):
            return  # rewritten at every segment change; the flush sends the final one
        if stored.size != size:
            raise Unavailable(f"spooled {rel!r} has {stored.size} bytes, expected {size}")
        self._shipped[(recording_id, rel)] = size

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)

    async def flush(self, sessions: async_sessionmaker[AsyncSession], data_dir: Path, recording_id: str) -> bool:
        """Put every kept file of a stopped recording in the spool, mark it spooled, delete the local copies.

        Retries, with backoff up to 10 s, until it succeeds or the node shuts down. Idempotent.

        Args:
            sessions: Database sessions.
            data_dir: This node's data directory.
            recording_id: The recording (its segments are all closed and their rows written).

        Returns:
            True once the recording is spooled (or there is no spool); False if the node is shutting down
            first (the next start-up flushes it).
        """
        attempt = 0
        while self._backend is not None:
            if self._closing.is_set():
                log.info("recording %s: spool flush left for the next start", recording_id)
                return False
            try:
                await self._flush_once(sessions, data_dir, recording_id)
                return True
            except Exception as exc:
                # Even a refusal (bad credentials, no bucket) is retried: the files stay here until an operator
                # fixes the spool, and the recording's job waits for them rather than losing them.
                self.failures += 1
                retryable = not isinstance(exc, RoomtapeError) or exc.retryable
                (log.warning if retryable else log.error)(
                    "recording %s: spool flush failed, retrying: %r", recording_id, exc
                )
            await self._sleep(_retry_delay(attempt))
            attempt += 1
        return True

    async def _flush_once(self, sessions: async_sessionmaker[AsyncSession], data_dir: Path, recording_id: str) -> None:
        assert self._backend is not None
        async with sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is None or rec.config.get(SPOOLED):
                return
            files = spooled_files(await _kept_rows(db, recording_id)) + rendered_files(rec)
        base = recording_dir(data_dir, recording_id)
        for entry in [k for k in self._queue if k[0] == recording_id]:
            del self._queue[entry]  # this flush sends them (the stop's last segments), not twice
        for rel in files:
            local = base / rel
            if not local.is_file():
                continue  # lost in a crash (its row says so), or already flushed by a previous run
            size = local.stat().st_size
            key = spool_key(self._prefix, recording_id, rel)
            if not _is_manifest(rel) and self._shipped.get((recording_id, rel)) == size:
                continue  # sent while recording
            if not _is_manifest(rel) and await _remote_size(self._backend, key) == size:
                continue  # sent before a restart
            stored = await self._backend.put_file(local, key)
            if stored.size != size:
                raise Unavailable(f"spooled {rel!r} has {stored.size} bytes, expected {size}")
        async with sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is None:
                return
            rec.config = {**rec.config, SPOOLED: True}
            await db.commit()
        for entry in [k for k in self._shipped if k[0] == recording_id]:
            del self._shipped[entry]
        await asyncio.to_thread(_remove_local, base, files)
        log.info("recording %s: %d files spooled", recording_id, len(files))

    async def flush_pending(self, sessions: async_sessionmaker[AsyncSession], data_dir: Path) -> None:
        """Flush every stopped recording this node still holds on disk (start-up, after a crash or an outage)."""
        root = data_dir / "recordings"
        if self._backend is None or not root.is_dir():
            return
        local_ids = [d.name for d in root.iterdir() if d.is_dir()]
        async with sessions() as db:
            query = select(Recording).where(Recording.id.in_(local_ids), Recording.status == "UPLOADING")
            recs = await db.scalars(query)
            pending = [r.id for r in recs if not r.config.get(SPOOLED)]
        for recording_id in pending:
            if not await self.flush(sessions, data_dir, recording_id):
                return

    def stopping(self) -> None:
        """Stop retrying and sending (what is left is flushed at the next start); call :meth:`aclose` next."""
        self._closing.set()
        self._wake.set()

    async def aclose(self) -> None:
        """Stop the senders and release the backend."""
        self.stopping()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._backend is not None:
            await self._backend.close()


def _size_of(path: Path) -> int | None:
    """A local file's size, None if it is gone (one stat: cheap enough for the event loop)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return None


def _remove_local(base: Path, files: Iterable[str]) -> None:
    """Delete spooled local files, then the directories left empty (down to ``base`` itself)."""
    dirs: set[Path] = set()
    for rel in files:
        path = base / rel
        path.unlink(missing_ok=True)
        dirs.update(p for p in path.parents if p == base or base in p.parents)
    for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # not empty: something else (a render) still lives there
            directory.rmdir()


async def fetch(deps: JobDeps, recording_id: str) -> None:
    """Bring a stopped recording's track files and manifests from the spool into this host's data directory.

    Waits (retrying) until the media node has spooled the recording and while the spool is down. Files
    already here are kept; a file missing from the spool is left to the upload, which then fails the
    recording with its name.

    Args:
        deps: Settings and database.
        recording_id: The recording.
    """
    storage = spool_storage(deps.settings)
    if storage is None:
        return
    backend, prefix = storage
    attempt = 0
    try:
        while True:
            try:
                await _fetch_once(deps, backend, prefix, recording_id)
                return
            except RoomtapeError as exc:
                if not exc.retryable:
                    raise
                log.info("recording %s: spool fetch will be retried: %s", recording_id, exc.message)
            await asyncio.sleep(_retry_delay(attempt))
            attempt += 1
    finally:
        await backend.close()


async def _fetch_once(deps: JobDeps, backend: StorageBackend, prefix: str, recording_id: str) -> None:
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None or rec.status != "UPLOADING":
            return
        files = spooled_files(await _kept_rows(db, recording_id)) + rendered_files(rec)
        if not files:
            return  # nothing kept to fetch (all uploaded already, or no media): no reason to wait
        if not rec.config.get(SPOOLED):
            raise Unavailable(f"recording {recording_id} is not spooled by its media node yet")
    base = recording_dir(deps.settings.data_dir, recording_id)
    fetched = 0
    for rel in files:
        local = base / rel
        if local.is_file():
            continue
        try:
            await download_file(backend, spool_key(prefix, recording_id, rel), local)
            fetched += 1
        except NotFound:
            log.error("recording %s: %s is not in the spool", recording_id, rel)
    log.info("recording %s: %d files fetched from the spool", recording_id, fetched)


async def purge(deps: JobDeps, recording_id: str, statuses: Sequence[str] = ("UPLOADED",)) -> None:
    """Delete a recording's spooled files once it is in one of ``statuses`` (never fails: logs instead).

    Args:
        deps: Settings and database.
        recording_id: The recording.
        statuses: Only then: by default once UPLOADED (an ERRORED one may be retried from the spool).
    """
    storage = spool_storage(deps.settings)
    if storage is None:
        return
    backend, prefix = storage
    try:
        async with deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is None or rec.status not in statuses:
                return
            rows = list(await db.scalars(select(TrackFile).where(TrackFile.recording_id == recording_id)))
        for rel in spooled_files(rows) + rendered_files(rec):
            await backend.delete(spool_key(prefix, recording_id, rel))
    except RoomtapeError as exc:
        log.warning("recording %s: spooled files not deleted: %s", recording_id, exc.message)
    finally:
        await backend.close()


async def keep_spooled(deps: JobDeps, recording_id: str) -> int:
    """Let a recording whose media node is gone for good go on with what reached the spool.

    Its segments missing from the spool become ``failed`` (lost, as a crash loses them: the upload skips them,
    the composer never sees them) and the recording is marked spooled, so its job stops waiting. Without a
    spool it does nothing (the files are in the data directory, where start-up recovery repairs them).

    Args:
        deps: Settings and database.
        recording_id: A stopped recording (UPLOADING) of the dead node.

    Returns:
        How many segments were lost.
    """
    storage = spool_storage(deps.settings)
    if storage is None:
        return 0
    backend, prefix = storage
    lost = 0
    try:
        async with deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is None or rec.config.get(SPOOLED):
                return 0
            for row in await _kept_rows(db, recording_id):
                if await _remote_size(backend, spool_key(prefix, recording_id, row.path)) is None:
                    row.status = "failed"
                    lost += 1
            rec.config = {**rec.config, SPOOLED: True}
            await db.commit()
    finally:
        await backend.close()
    log.warning("recording %s: its media node is gone; %d segments never reached the spool", recording_id, lost)
    return lost


async def hand_over(deps: JobDeps, recording_id: str) -> None:
    """Spool a stopped recording of a media node that died, from whichever process recovers it.

    If its files are on this host (a data directory shared with the dead node, already repaired by the
    recovery), they are flushed from here (:meth:`Shipper.flush`); otherwise the dead node's disk is out of
    reach and :func:`keep_spooled` keeps what it had sent. Without a spool it does nothing. Idempotent.

    Args:
        deps: Settings and database.
        recording_id: The recording, stopped by the recovery.
    """
    if not deps.settings.spool_url:
        return
    base = recording_dir(deps.settings.data_dir, recording_id)
    if await asyncio.to_thread(lambda: any(base.rglob("*.webm")) if base.is_dir() else False):
        shipper = Shipper.from_settings(deps.settings)
        try:
            await shipper.flush(deps.sessions, deps.settings.data_dir, recording_id)
        finally:
            await shipper.aclose()
    else:
        await keep_spooled(deps, recording_id)
