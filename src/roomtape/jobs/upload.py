"""Upload a stopped recording's files to its storage and move it ``UPLOADING → UPLOADED``.

Entry point for the recording engine::

    async def upload_recording(deps: JobDeps, recording_id: str) -> None

``deps`` is the ``ServerContext`` (or any :class:`~roomtape.jobs.deps.JobDeps`). Call it — better: submit
it with ``await ctx.jobs.submit_upload(recording_id)``, which retries — after committing the recording in
``UPLOADING`` with its ``TrackFile`` rows. Local files are read from :func:`local_dir` (``TrackFile.path``
is relative to it; every other file there, e.g. manifests and the composite ``output_file_name``, is
uploaded too, at the same relative path under the storage prefix).

Per file: upload (local storage on the same file system takes the file by a hard link instead of a copy,
`~roomtape.storage.base.TakesFiles`), verify the remote size (and MD5 where the backend reports one), mark the
``TrackFile`` ``uploaded`` and commit, and only then delete the local copy. Then set ``download_url`` (the
``output_file_name``), ``audio_download_url`` (``config["audio_file_name"]``), ``download_url_expiry``
and ``file_size`` — no URLs when ``config.realtimekit_bucket_config.enabled`` is false — and emit
``recording.statusUpdate``. A track recording started by the VideoSDK API also gets its
``participant-track-recording-stopped`` webhook here, one per participant and kind, whose ``fileDetails``
carry each file's storage key and download URL (roomtape-signed, or presigned by a cloud backend); a
permanent failure sends ``participant-track-recording-failed``.

Storage: the recording's own ``storage_config``, else its app's default ``storage_config`` (copied onto the
recording at its first upload, under ``{path}/{bucket_dir_path}``, so later downloads keep finding it even if
the app's default changes), else the server's default. A client-given storage is checked again before each
upload (:func:`roomtape.storage.validate.check_storage_config`: safe ``path``, hosts resolving to public
addresses); a refusal is a permanent error.

Errors: a retryable one (storage down) propagates, the recording stays ``UPLOADING`` and the runner tries
again later. A permanent one sets ``ERRORED`` with the reason in ``error`` and keeps every local file;
:func:`retry_recording` puts it back to ``UPLOADING``. Running it twice, or after a crash anywhere, is
safe: uploaded files are skipped, and a file whose local copy is gone is accepted if the remote copy has
the recorded size.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from roomtape.config import Settings
from roomtape.db.models import App, Recording, TrackFile, utcnow
from roomtape.errors import Conflict, NotFound, RoomtapeError
from roomtape.jobs.deps import JobDeps
from roomtape.recording.finalize import emit_track_event, recording_dir
from roomtape.storage.base import TakesFiles, file_md5, join_key
from roomtape.storage.registry import StorageChoice, storage_for
from roomtape.storage.signer import DownloadSigner
from roomtape.storage.validate import check_storage_config, safe_dir_path
from roomtape.webhooks.outbox import emit
from roomtape.webhooks.videosdk_events import FileDetail, TrackRecordingEvent

log = logging.getLogger(__name__)


def local_dir(settings: Settings, recording_id: str) -> Path:
    """Where a recording's files are written before upload (the recording engine writes there too)."""
    return recording_dir(settings.data_dir, recording_id)


def choice_for(deps: JobDeps, rec: Recording) -> StorageChoice:
    """The storage of a recording."""
    signer = DownloadSigner(deps.secret_key, deps.settings.resolved_public_url)
    return storage_for(
        deps.settings,
        deps.box,
        signer,
        recording_id=rec.id,
        app_id=rec.app_id,
        storage_config=rec.storage_config,
        bucket_dir_path=rec.config.get("bucket_dir_path"),
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def status_payload(rec: Recording) -> dict[str, Any]:
    """Body of ``recording.statusUpdate`` (RealtimeKit's shape: the event, the meeting and the recording)."""
    return {
        "event": "recording.statusUpdate",
        "meeting": {"id": rec.meeting_id, "sessionId": rec.session_id},
        "recording": {
            "id": rec.id,
            "status": rec.status,
            "outputFileName": rec.output_file_name,
            "downloadUrl": rec.download_url,
            "downloadUrlExpiry": _iso(rec.download_url_expiry),
            "audioDownloadUrl": rec.audio_download_url,
            "fileSize": rec.file_size,
            "startedTime": _iso(rec.started_time),
            "stoppedTime": _iso(rec.stopped_time),
            "recordingDuration": rec.recording_duration,
            "errorReason": rec.error,
        },
    }


def _status_target(rec: Recording) -> str | None:
    """The per-request URL ``recording.statusUpdate`` goes to besides registered webhooks.

    A VideoSDK ``webhookUrl`` receives the ``participant-track-recording-*`` events only.
    """
    if rec.config.get("api") == "videosdk":
        return None
    url = rec.config.get("webhook_url")
    return str(url) if url else None


async def _verify(choice: StorageChoice, key: str, local: Path, size: int) -> None:
    remote = await choice.backend.stat(key)
    if remote.size != size:
        raise RoomtapeError(f"uploaded {key!r} has {remote.size} bytes, expected {size}", retryable=True)
    if remote.md5 is not None and remote.md5 != await asyncio.to_thread(file_md5, local):
        raise RoomtapeError(f"uploaded {key!r} has a different checksum", retryable=True)


async def upload_recording(deps: JobDeps, recording_id: str) -> None:
    """Upload every file of the recording and mark it ``UPLOADED`` (see the module docstring)."""
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None or rec.status != "UPLOADING":
            return
        tracks = {t.path: t for t in await db.scalars(select(TrackFile).where(TrackFile.recording_id == rec.id))}
        base = local_dir(deps.settings, rec.id)
        try:
            await _adopt_app_storage(db, rec)
            if rec.storage_config:
                await check_storage_config(deps.settings, deps.box.open_fields(rec.storage_config))
            choice = choice_for(deps, rec)
        except RoomtapeError as exc:
            await _fail(db, rec, exc)
            return
        try:
            on_disk = sorted(
                p.relative_to(base).as_posix()
                for p in (base.rglob("*") if base.is_dir() else [])
                if p.is_file() and not p.name.endswith(".part")
            )
            for rel in sorted(set(tracks) | set(on_disk)):
                track = tracks.get(rel)
                local = base / rel
                key = choice.key(rel)
                if track is not None and track.status == "uploaded":
                    local.unlink(missing_ok=True)
                    continue
                if track is not None and track.status == "failed" and not local.is_file():
                    continue  # lost in a crash (nothing readable); the recording keeps its other files
                if not local.is_file():
                    if track is not None and await _remote_has(choice, key, track.size):
                        track.status = "uploaded"
                        await db.commit()
                        continue
                    raise RoomtapeError(f"local file {rel!r} is missing and was never uploaded", retryable=False)
                size = local.stat().st_size
                if isinstance(choice.backend, TakesFiles):
                    await choice.backend.take_file(local, key)  # deleted below: no need for a copy
                else:
                    await choice.backend.put_file(local, key)
                await _verify(choice, key, local, size)
                if track is not None:
                    track.status = "uploaded"
                    track.size = size
                    await db.commit()
                local.unlink()  # only now: the remote copy is verified (and, for tracks, recorded)
            await _finish(deps, db, rec, choice)
        except RoomtapeError as exc:
            if exc.retryable:
                log.warning("upload of recording %s will be retried: %s", rec.id, exc.message)
                raise
            await _fail(db, rec, exc)
        finally:
            await choice.backend.close()


async def _adopt_app_storage(db: Any, rec: Recording) -> None:
    """Give a recording without a ``storage_config`` its app's default one (sealed secrets copied as they are)."""
    if rec.storage_config:
        return
    app_config = await db.scalar(select(App.storage_config).where(App.id == rec.app_id))
    if not app_config:
        return
    parts = [
        safe_dir_path(app_config.get("path"), "storage_config.path"),
        safe_dir_path(rec.config.get("bucket_dir_path"), "bucketDirPath"),
    ]
    path = join_key(*parts) if any(parts) else ""
    rec.storage_config = {**app_config, "path": path} if path else {k: v for k, v in app_config.items() if k != "path"}
    await db.commit()


async def _remote_has(choice: StorageChoice, key: str, size: int) -> bool:
    try:
        return (await choice.backend.stat(key)).size == size
    except NotFound:
        return False


async def _finish(deps: JobDeps, db: Any, rec: Recording, choice: StorageChoice) -> None:
    bucket = (rec.config.get("realtimekit_bucket_config") or {}) if isinstance(rec.config, dict) else {}
    urls_enabled = bucket.get("enabled", True) is not False
    ttl = deps.settings.download_url_ttl_secs
    rec.download_url = rec.audio_download_url = None
    rec.download_url_expiry = None
    if rec.output_file_name:
        key = choice.key(rec.output_file_name)
        if await choice.backend.exists(key):
            rec.file_size = (await choice.backend.stat(key)).size
            if urls_enabled:
                signed = await choice.backend.signed_url(key, ttl)
                rec.download_url, rec.download_url_expiry = signed.url, signed.expires_at
    audio = rec.config.get("audio_file_name")
    if audio and urls_enabled and await choice.backend.exists(choice.key(audio)):
        signed = await choice.backend.signed_url(choice.key(audio), ttl)
        rec.audio_download_url = signed.url
        rec.download_url_expiry = rec.download_url_expiry or signed.expires_at
    if rec.file_size is None:
        sizes = await db.scalars(select(TrackFile.size).where(TrackFile.recording_id == rec.id))
        rec.file_size = sum(sizes)
    rec.status = "UPLOADED"
    rec.error = None
    rec.updated_at = utcnow()
    emit(db, rec.app_id, "recording.statusUpdate", status_payload(rec), target_url=_status_target(rec))
    if rec.kind == "track":
        await _emit_track_stopped(db, rec, choice, ttl)
    await db.commit()
    log.info("recording %s uploaded", rec.id)


async def _emit_track_stopped(db: Any, rec: Recording, choice: StorageChoice, ttl: int) -> None:
    """``participant-track-recording-stopped`` per participant and kind, with the uploaded files' URLs."""
    if rec.config.get("api") != "videosdk":
        return
    rows = await db.scalars(
        select(TrackFile)
        .where(TrackFile.recording_id == rec.id, TrackFile.status == "uploaded")
        .order_by(TrackFile.participant_id, TrackFile.kind, TrackFile.index)
    )
    by_track: dict[tuple[str, str], list[FileDetail]] = {}
    for row in rows:
        key = choice.key(row.path)
        try:
            url = (await choice.backend.signed_url(key, ttl)).url
        except RoomtapeError as exc:
            log.warning("recording %s: no download URL for %s: %s", rec.id, key, exc.message)
            url = ""
        by_track.setdefault((row.participant_id, row.kind), []).append(FileDetail(file_path=key, file_url=url))
    for (participant_id, kind), files in sorted(by_track.items()):
        emit_track_event(db, rec, participant_id, kind, "participant-track-recording-stopped", files)


async def _fail(db: Any, rec: Recording, exc: RoomtapeError) -> None:
    rec.status = "ERRORED"
    rec.error = exc.message
    emit(db, rec.app_id, "recording.statusUpdate", status_payload(rec), target_url=_status_target(rec))
    if rec.kind == "track":
        failed: TrackRecordingEvent = "participant-track-recording-failed"
        emit_track_event(db, rec, rec.participant_id or "", rec.track_kind or "", failed)
    await db.commit()
    log.error("recording %s upload failed for good: %s (local files kept)", rec.id, exc.message)


async def retry_recording(deps: JobDeps, recording_id: str) -> None:
    """Put an ``ERRORED`` (or stuck ``UPLOADING``) recording back to ``UPLOADING``; submit it afterwards."""
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None:
            raise NotFound("no such recording")
        if rec.status not in ("ERRORED", "UPLOADING"):
            raise Conflict(f"recording is {rec.status}; only ERRORED or UPLOADING recordings can be retried")
        rec.status = "UPLOADING"
        rec.error = None
        emit(db, rec.app_id, "recording.statusUpdate", status_payload(rec), target_url=_status_target(rec))
        await db.commit()


async def refresh_download_urls(deps: JobDeps, rec: Recording) -> bool:
    """Sign an ``UPLOADED`` recording's expired ``download_url``/``audio_download_url`` again.

    Re-signed by roomtape for local and SFTP storage, presigned again by cloud backends; the caller commits.

    Returns:
        True if the URLs were renewed.
    """
    expiry = rec.download_url_expiry
    if rec.status != "UPLOADED" or expiry is None or not (rec.download_url or rec.audio_download_url):
        return False
    if (expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)) > utcnow():
        return False
    choice = choice_for(deps, rec)
    ttl = deps.settings.download_url_ttl_secs
    try:
        if rec.download_url and rec.output_file_name:
            signed = await choice.backend.signed_url(choice.key(rec.output_file_name), ttl)
            rec.download_url, rec.download_url_expiry = signed.url, signed.expires_at
        audio = rec.config.get("audio_file_name")
        if rec.audio_download_url and audio:
            signed = await choice.backend.signed_url(choice.key(audio), ttl)
            rec.audio_download_url, rec.download_url_expiry = signed.url, signed.expires_at
    finally:
        await choice.backend.close()
    return True
