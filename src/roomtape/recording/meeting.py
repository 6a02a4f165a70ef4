"""Meeting (composite) recordings: record every track, render one file on stop, upload it.

A composite recording is a track recording of every participant's tracks (kind ``composite``, files under
``jobs.upload.local_dir(settings, recording_id)``) plus, once it stops, a render of the composite
(:func:`roomtape.recording.composer.compose`) in a worker thread. The flow:

- start (API call, or the session's start for ``record_on_start`` meetings): INVOKED, then RECORDING at the
  first frame written (``started_time``), ``recording.statusUpdate`` on each change;
- pause/resume: the writers keep running, the paused spans are stored in ``config["pauses"]`` (epoch ms)
  and cut out of the composite, so the file is one continuous recording; ``recording_duration`` excludes
  them;
- stop (API call, ``max_seconds``, all peers left): the recording service closes every segment and sets
  UPLOADING; then :meth:`MeetingRecordings.finish` renders ``output_file_name`` (and the
  ``audio_config.export_file`` audio file) with progress in ``config["progress"]``, and submits the upload
  job, which makes it UPLOADED with ``download_url``. ``max_seconds`` stops it with ``stop_reason``
  ``API_CALL`` (caller name ``max_seconds``: RealtimeKit has no other fitting reason), after ``max_seconds``
  times ``settings.recording_max_seconds_scale`` (1 but in tests);
- nothing published before the stop: ERRORED (``NO_MEDIA_ERROR``) with one ``recording.statusUpdate``;
- a crash: start-up recovery stops an interrupted recording (``INTERNAL_ERROR``), and the recording's job
  (:func:`roomtape.jobs.compose.render_pending`) renders a composite that is missing, also one whose render
  was cut short (:meth:`MeetingRecordings.render` removes the partial file first).

Recordings started through VideoSDK's ``/v2/recordings/start`` also send ``recording-starting|started|
stopping|stopped|failed`` webhooks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, Recording, TrackFile, utcnow
from roomtape.errors import Conflict, InvalidInput, NotFound, RoomtapeError
from roomtape.jobs.deps import JobDeps
from roomtape.jobs.upload import choice_for, local_dir, status_payload
from roomtape.media.plane import LiveRoom, MediaPlane
from roomtape.recording.compose.feed import LiveControl
from roomtape.recording.compose.options import (
    AudioFormat,
    ChannelLayout,
    ComposeOptions,
    ComposeProgress,
    ExportOptions,
    Layout,
    OutputFormat,
    VideoCodec,
)
from roomtape.recording.compose.timeline import recorded_spans
from roomtape.recording.composer import compose, live_supported
from roomtape.recording.live import LiveRender, LiveResult
from roomtape.recording.manifest import MANIFEST_NAME
from roomtape.recording.service import ACTIVE_STATUSES, TRACK_KINDS, RecordingService
from roomtape.recording.spool import fetch
from roomtape.storage.base import download_file
from roomtape.webhooks.outbox import emit

__all__ = [
    "NO_MEDIA_ERROR",
    "MeetingRecordings",
    "compose_options",
    "output_extension",
    "recompose",
    "recording_spans",
    "remove_partial_renders",
    "running_composite",
    "videosdk_recording_event",
]

log = logging.getLogger(__name__)

VideoSdkRecordingEvent = Literal[
    "recording-starting", "recording-started", "recording-stopping", "recording-stopped", "recording-failed"
]

_AUDIO_FORMATS: Final[dict[str, Literal["aac", "mp3", "ogg"]]] = {"AAC": "aac", "MP3": "mp3", "OPUS": "ogg"}
_EXTENSIONS: Final[dict[str, str]] = {"mp4": "mp4", "webm": "webm", "ogg": "ogg", "mp3": "mp3", "aac": "m4a"}
_FINAL: Final = ("UPLOADED", "ERRORED")

NO_MEDIA_ERROR: Final = "no media was recorded"
"""``error`` of a composite recording that stopped before any frame was written, e.g. nobody published: it
ends ERRORED (there is no file to give a ``download_url`` for), with one ``recording.statusUpdate`` for it."""

Submit = Callable[[str], Awaitable[None]]


def output_extension(fmt: str) -> str:
    """The file extension of an output format."""
    return _EXTENSIONS.get(fmt, fmt)


def _ms(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def recording_spans(rec: Recording) -> list[tuple[int, int]]:
    """The recorded (start, end) epoch-ms spans: ``started_time..stopped_time`` minus the pauses."""
    if rec.started_time is None:
        return []
    start = _ms(rec.started_time)
    end = _ms(rec.stopped_time) if rec.stopped_time is not None else int(time.time() * 1000)
    return recorded_spans(start, rec.config.get("pauses") or [], end)


def compose_options(config: dict[str, Any], base: Path) -> ComposeOptions:
    """The render options a recording's ``config`` asks for (RealtimeKit or VideoSDK fields).

    ``config["compose"]`` (``layout``, ``format``, ``channels``, ``width``, ``height``, ``video_codec``,
    ``export_format``, ``audio_file_name``) is authoritative; it is derived at start from ``audio_config``
    / ``video_config`` (RealtimeKit) or ``config`` (VideoSDK).
    """
    c = config.get("compose") or {}
    export = None
    audio_name = config.get("audio_file_name")
    if audio_name:
        export = ExportOptions(path=base / audio_name, format=c.get("export_format", "mp3"))
    return ComposeOptions(
        layout=c.get("layout", "grid"),
        format=c.get("format", "mp4"),
        video_codec=c.get("video_codec"),
        channels=c.get("channels", "stereo"),
        agent_participant_id=c.get("agent_participant_id"),
        width=int(c.get("width", 1280)),
        height=int(c.get("height", 720)),
        fps=int(c.get("fps") or 30),
        preset=str(c.get("preset") or "superfast"),
        export=export,
    )


def realtimekit_start(
    meeting: Meeting,
    *,
    audio_config: dict[str, Any] | None = None,
    video_config: dict[str, Any] | None = None,
    file_name_prefix: str | None = None,
    bucket_config: dict[str, Any] | None = None,
    storage_config: dict[str, Any] | None = None,
    max_seconds: int | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None, int | None]:
    """A RealtimeKit recording's ``(config, sealed storage_config, max_seconds)``.

    What the start call leaves out comes from the meeting's ``recording_config`` (RealtimeKit: the meeting's
    settings win over the app's), and a ``record_on_start`` recording takes them all from there.
    """
    defaults = meeting.recording_config or {}
    audio = audio_config if audio_config is not None else defaults.get("audio_config")
    video = video_config if video_config is not None else defaults.get("video_config")
    settings, _ = derive_compose(audio_config=audio, video_config=video)
    config: dict[str, Any] = {
        "api": "realtimekit",
        "compose": settings,
        "audio_config": audio,
        "video_config": video,
        "file_name_prefix": file_name_prefix if file_name_prefix is not None else defaults.get("file_name_prefix"),
    }
    bucket = bucket_config if bucket_config is not None else defaults.get("realtimekit_bucket_config")
    if bucket is not None:
        config["realtimekit_bucket_config"] = bucket
    default_max = defaults.get("max_seconds")
    limit = max_seconds if max_seconds is not None else (int(default_max) if default_max is not None else None)
    return config, storage_config if storage_config is not None else defaults.get("storage_config"), limit


def derive_compose(
    *,
    audio_config: dict[str, Any] | None = None,
    video_config: dict[str, Any] | None = None,
    videosdk_config: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], AudioFormat | None]:
    """Compose settings from the API's recording options; also the export audio format, if one is wanted."""
    audio_config = audio_config or {}
    video_config = video_config or {}
    layout: Layout = "grid"
    fmt: OutputFormat = "mp4"
    codec: VideoCodec | None = None
    channels: ChannelLayout = "stereo" if audio_config.get("channel", "stereo") == "stereo" else "mono"
    width, height = int(video_config.get("width") or 1280), int(video_config.get("height") or 720)
    audio_fmt: AudioFormat = _AUDIO_FORMATS.get(str(audio_config.get("codec", "AAC")).upper(), "mp3")
    if str(video_config.get("codec", "H264")).upper() in ("VP8", "VP9"):
        fmt, codec = "webm", "vp9" if str(video_config["codec"]).upper() == "VP9" else "vp8"
    if video_config.get("export_file") is False:
        fmt, layout = audio_fmt, "audio_only"
    if videosdk_config:
        kind = str((videosdk_config.get("layout") or {}).get("type", "GRID")).upper()
        layout = "active_speaker" if kind in ("SPOTLIGHT", "SIDEBAR") else "grid"
        if videosdk_config.get("orientation") == "portrait":
            width, height = min(width, height), max(width, height)
        quality = videosdk_config.get("quality")
        if quality == "low":
            width, height = (640, 360) if width >= height else (360, 640)
        if videosdk_config.get("mode") == "audio":
            fmt, layout = "mp3", "audio_only"
    settings: dict[str, Any] = {
        "layout": layout,
        "format": fmt,
        "video_codec": codec,
        "channels": channels,
        "width": width - width % 2,
        "height": height - height % 2,
    }
    for quality in ("fps", "preset"):  # roomtape extensions of video_config
        if video_config.get(quality):
            settings[quality] = video_config[quality]
    agent = (audio_config.get("channel_map") or {}).get("agent_participant_id")
    if agent and audio_config.get("channel", "stereo") == "stereo":
        # Agent sessions: everyone else on the left, the agent on the right.
        settings["channels"], settings["agent_participant_id"] = "agent_stereo", str(agent)
    export: AudioFormat | None = audio_fmt if audio_config.get("export_file") else None
    if export is not None:
        settings["export_format"] = export
    return settings, export


async def running_composite(db: AsyncSession, meeting_id: str) -> Recording | None:
    """The meeting's newest running (INVOKED, RECORDING or PAUSED) composite recording, if any."""
    result: Recording | None = await db.scalar(
        select(Recording)
        .where(
            Recording.meeting_id == meeting_id,
            Recording.kind == "composite",
            Recording.status.in_(ACTIVE_STATUSES),
        )
        .order_by(Recording.invoked_time.desc())
        .limit(1)
    )
    return result


def videosdk_recording_event(event: VideoSdkRecordingEvent, rec: Recording, **extra: Any) -> dict[str, Any]:
    """A VideoSDK ``recording-*`` webhook body (seed 000/001 shape: ``webhookType`` and ``data``)."""
    data: dict[str, Any] = {"meetingId": rec.meeting_id, "sessionId": rec.session_id, "recordingId": rec.id}
    data.update(extra)
    return {"webhookType": event, "data": data}


def emit_status(db: AsyncSession, rec: Recording, videosdk: VideoSdkRecordingEvent | None = None, **extra: Any) -> None:
    """Queue ``recording.statusUpdate`` (and, for VideoSDK-started recordings, the ``recording-*`` event)."""
    url = rec.config.get("webhook_url")
    emit(db, rec.app_id, "recording.statusUpdate", status_payload(rec), target_url=url)
    if videosdk is not None and rec.config.get("api") == "videosdk":
        emit(db, rec.app_id, videosdk, videosdk_recording_event(videosdk, rec, **extra), target_url=url)


class MeetingRecordings:
    """Composite recordings of the process's live rooms.

    Args:
        deps: Settings, database and keys (the server context).
        service: The track recording service that writes the tracks.
        media: The media plane (``record_on_start`` hooks into its room openings).
        submit_upload: Starts the upload job of a recording (``ctx.jobs.submit_upload``).
    """

    def __init__(self, deps: JobDeps, service: RecordingService, media: MediaPlane, submit_upload: Submit) -> None:
        self.deps = deps
        self.service = service
        self.media = media
        self.submit_upload = submit_upload
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timers: dict[str, asyncio.Task[None]] = {}
        self._live: dict[str, LiveRender] = {}
        self._closing = False

    @classmethod
    def install(
        cls, deps: JobDeps, service: RecordingService, media: MediaPlane, submit_upload: Submit
    ) -> MeetingRecordings:
        """Make the manager, chain it into the service's after-stop step and hook ``record_on_start``."""
        self = cls(deps, service, media, submit_upload)
        previous = service.finalizer()

        async def finalizer(recording_id: str) -> None:
            async with deps.sessions() as db:
                kind = await db.scalar(select(Recording.kind).where(Recording.id == recording_id))
            if kind == "composite":
                await self.finish(recording_id)
            else:
                await previous(recording_id)

        service._finalizer = finalizer  # the service calls it after every stop
        media.on_room_opened(self._room_opened)
        return self

    async def aclose(self) -> None:
        """Cancel timers; wait for renders in progress (they end with the files they were writing)."""
        self._closing = True
        for timer in self._timers.values():
            timer.cancel()
        for live in list(self._live.values()):
            await live.cancel()
        self._live.clear()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # -- start ------------------------------------------------------------------------------------------
    async def start(
        self,
        db: AsyncSession,
        meeting: Meeting,
        *,
        config: dict[str, Any],
        reason: Literal["API_CALL", "RECORD_ON_START"] = "API_CALL",
        caller: dict[str, Any] | None = None,
        allow_multiple: bool = False,
        storage_config: dict[str, Any] | None = None,
        max_seconds: int | None = None,
    ) -> Recording:
        """Start a composite recording of the meeting's live session.

        Args:
            db: A database session (used for the checks; the row is written by the service and here).
            meeting: The meeting.
            config: Recording config: ``api``, ``compose`` settings, ``file_name_prefix``, ``webhook_url`` ...
            reason: ``start_reason.reason``.
            caller: ``start_reason.caller``.
            allow_multiple: Allow another recording while one runs.
            storage_config: Where to upload (secrets already sealed).
            max_seconds: Stop after this many seconds.

        Returns:
            The recording (INVOKED, or RECORDING if a frame was already written).

        Raises:
            Conflict: A recording of the meeting is running (and ``allow_multiple`` is false), or the meeting
                has no live session.
        """
        async with self._lock:
            if not allow_multiple:
                running = await running_composite(db, meeting.id)
                if running is not None and self.service.is_active(running.id):
                    raise Conflict(f"meeting {meeting.id} is already being recorded (recording {running.id})")
            started = await self.service.start_meeting_tracks(
                db, meeting=meeting, participant_ids=None, kinds=TRACK_KINDS, caller=caller
            )
            recording_id = started.id
            async with self.deps.sessions() as own:
                rec = await own.get(Recording, recording_id)
                assert rec is not None
                ext = output_extension(str((config.get("compose") or {}).get("format", "mp4")))
                prefix = config.get("file_name_prefix") or ""
                stem = f"{prefix}_{rec.id}" if prefix else rec.id
                merged = {**rec.config, **config, "pauses": []}
                export = (config.get("compose") or {}).get("export_format")
                if export:
                    merged["audio_file_name"] = f"{stem}_audio.{output_extension(export)}"
                if max_seconds is not None:
                    merged["max_seconds"] = max_seconds
                rec.kind = "composite"
                rec.output_file_name = f"{stem}.{ext}"
                rec.config = merged
                rec.start_reason = {"reason": reason, "caller": None if reason == "RECORD_ON_START" else caller}
                if storage_config:
                    rec.storage_config = storage_config
                emit_status(own, rec, "recording-starting")
                await own.commit()
                await own.refresh(rec)
        self._spawn(self._watch_started(recording_id))
        if max_seconds is not None:
            delay = max_seconds * self.deps.settings.recording_max_seconds_scale
            self._timers[recording_id] = asyncio.ensure_future(self._max_seconds(recording_id, delay))
        return rec

    async def _watch_started(self, recording_id: str) -> None:
        """Send the RECORDING status update once the first frame is written.

        A recording that stops before any frame was written (nobody published) is ERRORED by the recording
        service without a finalizer run: its ``recording.statusUpdate`` (and ``recording-failed``) go out here.
        """
        while self.service.is_active(recording_id):
            async with self.deps.sessions() as db:
                rec = await db.get(Recording, recording_id)
                if rec is None:
                    return
                if rec.status != "INVOKED":
                    if rec.started_time is not None:
                        emit_status(db, rec, "recording-started")
                        await db.commit()
                        await self._start_live(rec)
                    return
            await asyncio.sleep(0.1)
        await self._report_no_media(recording_id)

    async def _start_live(self, rec: Recording) -> None:
        """Start the live render of a recording that just became RECORDING (if it is on and can render it)."""
        settings = self.deps.settings
        if not settings.live_composite or self._closing or rec.started_time is None:
            return
        base = local_dir(settings, rec.id)
        options = compose_options(rec.config, base)
        if not live_supported(options):
            log.info("recording %s: %s channels are rendered after the stop", rec.id, options.channels)
            return
        try:
            self._live[rec.id] = await LiveRender.start(
                rec.id,
                base,
                base / rec.output_file_name,
                options,
                LiveControl(_ms(rec.started_time), list(rec.config.get("pauses") or [])),
                lag=settings.live_composite_lag_secs,
            )
        except OSError:
            log.exception("recording %s: live composite not started, it is rendered after the stop", rec.id)

    async def _live_update(self, rec: Recording) -> None:
        """Tell the live render (if any) about a pause or a resume."""
        live = self._live.get(rec.id)
        if live is not None and rec.started_time is not None:
            await live.control(LiveControl(_ms(rec.started_time), list(rec.config.get("pauses") or [])))

    async def _finish_live(self, rec: Recording, spans: list[tuple[int, int]]) -> LiveResult | None:
        """Wait for the live render's file (None if there was none, or it failed: render from the files)."""
        live = self._live.pop(rec.id, None)
        if live is None or rec.started_time is None:
            return None
        try:
            return await live.finish(spans, _ms(rec.started_time), list(rec.config.get("pauses") or []))
        except Exception:
            log.exception("recording %s: live composite failed, rendering from the files", rec.id)
            await live.cancel()
            return None

    async def _report_no_media(self, recording_id: str) -> None:
        """Announce ERRORED for a recording the service stopped with nothing recorded (run once, by the watcher)."""
        for _ in range(100):  # the stop's last write lands shortly after the writers are gone
            async with self.deps.sessions() as db:
                rec = await db.get(Recording, recording_id)
                if rec is None or rec.started_time is not None or rec.status in ("UPLOADING", "UPLOADED"):
                    return
                if rec.status == "ERRORED":
                    rec.error = rec.error or NO_MEDIA_ERROR
                    emit_status(db, rec, "recording-failed")
                    await db.commit()
                    return
            await asyncio.sleep(0.05)

    async def _max_seconds(self, recording_id: str, seconds: float) -> None:
        """Stop the recording once ``max_seconds`` (times ``recording_max_seconds_scale``) have passed."""
        await asyncio.sleep(seconds)
        self._timers.pop(recording_id, None)
        if self.service.is_active(recording_id):
            # RealtimeKit's stop reasons are API_CALL, INTERNAL_ERROR and ALL_PEERS_LEFT: a limit set by the
            # start call is that call's doing, so API_CALL, with the caller naming the limit.
            await self.stop(recording_id, "API_CALL", {"type": "ORGANIZATION", "name": "max_seconds"})

    def _room_opened(self, live: LiveRoom) -> None:
        if not self._closing:
            self._spawn(self._record_on_start(live))

    async def _record_on_start(self, live: LiveRoom) -> None:
        try:
            async with self.deps.sessions() as db:
                meeting = await db.get(Meeting, live.meeting_id)
                if meeting is None or not meeting.record_on_start:
                    return
                config, storage, max_seconds = realtimekit_start(meeting)
                await self.start(
                    db,
                    meeting,
                    config=config,
                    reason="RECORD_ON_START",
                    storage_config=storage,
                    max_seconds=max_seconds,
                )
        except Conflict:
            pass  # already recorded
        except Exception:
            log.exception("record_on_start of meeting %s failed", live.meeting_id)

    # -- pause / resume / stop --------------------------------------------------------------------------
    async def _running(self, db: AsyncSession, recording_id: str) -> Recording:
        rec = await db.get(Recording, recording_id)
        if rec is None:
            raise NotFound("recording not found")
        if rec.status not in ACTIVE_STATUSES or not self.service.is_active(recording_id):
            raise Conflict(f"recording is {rec.status}, not running")
        return rec

    async def pause(self, recording_id: str) -> Recording:
        """RECORDING → PAUSED: what follows is cut from the composite until :meth:`resume`."""
        async with self._lock, self.deps.sessions() as db:
            rec = await self._running(db, recording_id)
            if rec.status != "RECORDING":
                raise Conflict(f"only a RECORDING recording can be paused; it is {rec.status}")
            now = utcnow()
            rec.status = "PAUSED"
            rec.paused_at = now
            rec.config = {**rec.config, "pauses": [*(rec.config.get("pauses") or []), [_ms(now), None]]}
            emit_status(db, rec)
            await db.commit()
            await db.refresh(rec)
            await self._live_update(rec)
            return rec

    async def resume(self, recording_id: str) -> Recording:
        """PAUSED → RECORDING."""
        async with self._lock, self.deps.sessions() as db:
            rec = await self._running(db, recording_id)
            if rec.status != "PAUSED":
                raise Conflict(f"only a PAUSED recording can be resumed; it is {rec.status}")
            self.close_pause(rec, utcnow())
            rec.status = "RECORDING"
            emit_status(db, rec)
            await db.commit()
            await db.refresh(rec)
            await self._live_update(rec)
            return rec

    @staticmethod
    def close_pause(rec: Recording, at: datetime) -> None:
        """End the recording's open pause (if any) at ``at``: ``config["pauses"]``, ``paused_seconds``."""
        pauses = [list(p) for p in rec.config.get("pauses") or []]
        if pauses and pauses[-1][1] is None:
            pauses[-1][1] = _ms(at)
            rec.paused_seconds = (rec.paused_seconds or 0.0) + (pauses[-1][1] - pauses[-1][0]) / 1000
        rec.paused_at = None
        rec.config = {**rec.config, "pauses": pauses}

    async def stop(
        self, recording_id: str, reason: str = "API_CALL", caller: dict[str, Any] | None = None
    ) -> Recording:
        """Stop: close the tracks (UPLOADING); the composite is rendered and uploaded in the background."""
        async with self._lock, self.deps.sessions() as db:
            rec = await self._running(db, recording_id)
            if rec.status == "PAUSED":
                self.close_pause(rec, utcnow())
            if rec.config.get("api") == "videosdk":
                body = videosdk_recording_event("recording-stopping", rec)
                emit(db, rec.app_id, "recording-stopping", body, target_url=rec.config.get("webhook_url"))
            await db.commit()
        timer = self._timers.pop(recording_id, None)
        if timer is not None and timer is not asyncio.current_task():
            timer.cancel()
        return await self.service.stop_recording(recording_id, reason, caller)  # type: ignore[arg-type]

    # -- after the stop ---------------------------------------------------------------------------------
    async def finish(self, recording_id: str) -> None:
        """Render the composite of a stopped recording (UPLOADING), then upload it."""
        timer = self._timers.pop(recording_id, None)
        if timer is not None:
            timer.cancel()
        async with self.deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is None or rec.status != "UPLOADING":
                if rec is not None and rec.status == "ERRORED":
                    emit_status(db, rec, "recording-failed")
                    await db.commit()
                return
            if rec.paused_at is not None:
                self.close_pause(rec, rec.stopped_time or utcnow())
            spans = recording_spans(rec)
            rec.recording_duration = round(sum(e - s for s, e in spans) / 1000)
            rec.config = {**rec.config, "spans": [list(s) for s in spans]}
            emit_status(db, rec)
            await db.commit()
            await db.refresh(rec)
        live = await self._finish_live(rec, spans)  # before the spool flush: it reads the local files
        if live is not None:
            await self._store_live(recording_id, live)
        if not await self.service.flush_spool(recording_id):
            return  # shutting down: the next start-up spools it, and the job resumed then renders it
        try:
            if live is None and not self.deps.settings.broker_url:  # distributed jobs: a worker renders it
                await fetch(self.deps, recording_id)  # back from the spool, if there is one
                await self.render(recording_id)
        except Exception as exc:
            log.exception("composite of recording %s failed", recording_id)
            async with self.deps.sessions() as db:
                rec = await db.get(Recording, recording_id)
                if rec is not None:
                    rec.status = "ERRORED"
                    rec.error = f"composite failed: {exc}"[:2000]
                    emit_status(db, rec, "recording-failed")
                    await db.commit()
            return
        await self.submit_upload(recording_id)
        self._spawn(self._after_upload(recording_id))

    async def render(self, recording_id: str) -> None:
        """Render ``output_file_name`` (and the export audio file) into the recording's local directory."""
        async with self.deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is None:
                raise NotFound("recording not found")
            spans = [(int(s), int(e)) for s, e in rec.config.get("spans") or recording_spans(rec)]
            base = local_dir(self.deps.settings, rec.id)
            options = compose_options(rec.config, base)
            out = base / rec.output_file_name
        # A render cut short (the process was killed) left its temporary file under its own pid's name.
        await asyncio.to_thread(remove_partial_renders, base)
        loop = asyncio.get_running_loop()
        writes: set[asyncio.Task[Any]] = set()

        def store(p: ComposeProgress) -> None:
            task = self._spawn(self._store_progress(recording_id, p))
            writes.add(task)
            task.add_done_callback(writes.discard)

        def progress(p: ComposeProgress) -> None:
            loop.call_soon_threadsafe(store, p)

        result = await asyncio.to_thread(
            compose, base, spans, options, out, progress=progress, cancel=threading.Event()
        )
        await asyncio.sleep(0)  # let the last progress reports be scheduled, then wait for their writes:
        await asyncio.gather(*writes, return_exceptions=True)  # none may overwrite the final state
        async with self.deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            assert rec is not None
            rec.config = {
                **rec.config,
                "progress": {"fraction": 1.0, "done": True},
                "composite": {
                    "duration_seconds": result.duration_seconds,
                    "participants": list(result.participants),
                    "render_seconds": result.render_seconds,
                },
            }
            rec.file_size = result.size_bytes
            await db.commit()

    async def _store_live(self, recording_id: str, live: LiveResult) -> None:
        """Record a finished live render like `render` does, with how it kept up (``composite.live``)."""
        if live.behind_at_stop_seconds > 2 * self.deps.settings.live_composite_lag_secs:
            log.warning(
                "recording %s: the live composite fell behind; %.1f s were rendered from the files after the stop",
                recording_id,
                live.behind_at_stop_seconds,
            )
        async with self.deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            assert rec is not None
            rec.config = {
                **rec.config,
                "progress": {"fraction": 1.0, "done": True},
                "composite": {
                    "duration_seconds": live.duration_seconds,
                    "participants": live.participants,
                    "render_seconds": live.render_seconds,
                    "live": {
                        "behind_at_stop_seconds": live.behind_at_stop_seconds,
                        "max_behind_seconds": live.max_behind_seconds,
                        "tail_seconds": round(live.tail_seconds, 3),
                        "caught_up_from_files": live.behind_at_stop_seconds
                        > 2 * self.deps.settings.live_composite_lag_secs,
                    },
                },
            }
            rec.file_size = live.size_bytes
            await db.commit()

    async def _store_progress(self, recording_id: str, p: ComposeProgress) -> None:
        async with self.deps.sessions() as db:
            rec = await db.get(Recording, recording_id)
            if rec is None or (rec.config.get("progress") or {}).get("done"):
                return
            rec.config = {
                **rec.config,
                "progress": {
                    "fraction": round(p.fraction, 4),
                    "media_seconds": round(p.media_seconds, 3),
                    "eta_seconds": p.eta_seconds,
                },
            }
            await db.commit()

    async def _after_upload(self, recording_id: str) -> None:
        """VideoSDK's ``recording-stopped`` (with the file) or ``-failed`` once the upload is done."""
        while True:
            async with self.deps.sessions() as db:
                rec = await db.get(Recording, recording_id)
                if rec is None:
                    return
                if rec.status in _FINAL:
                    if rec.config.get("api") == "videosdk":
                        if rec.status == "UPLOADED":
                            body = videosdk_recording_event(
                                "recording-stopped",
                                rec,
                                filePath=str(
                                    PurePosixPath(rec.config.get("bucket_dir_path") or "", rec.output_file_name)
                                ),
                                fileUrl=rec.download_url,
                            )
                            event = "recording-stopped"
                        else:
                            body, event = videosdk_recording_event("recording-failed", rec), "recording-failed"
                        emit(db, rec.app_id, event, body, target_url=rec.config.get("webhook_url"))
                        await db.commit()
                    return
            await asyncio.sleep(0.2)


async def recompose(
    deps: JobDeps,
    recording_id: str,
    *,
    layout: Layout | None = None,
    fmt: OutputFormat | None = None,
    channels: ChannelLayout | None = None,
    width: int | None = None,
    height: int | None = None,
) -> Recording:
    """Render a finished composite again with another layout or format, then upload it.

    Track files the upload already moved to storage are fetched back into the local directory first. The
    new file becomes ``output_file_name``; the recording goes UPLOADING (the caller submits the upload job).

    Raises:
        NotFound: No such recording.
        Conflict: The recording is still running, or recorded nothing.
    """
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        if rec is None:
            raise NotFound("recording not found")
        if rec.status not in ("UPLOADED", "ERRORED", "UPLOADING") or rec.started_time is None:
            raise Conflict(f"recording is {rec.status}: only a stopped recording with media can be composed again")
        rows = list(await db.scalars(select(TrackFile).where(TrackFile.recording_id == rec.id)))
        base = local_dir(deps.settings, rec.id)
        await _fetch_tracks(deps, rec, rows, base)
        compose_cfg = dict(rec.config.get("compose") or {})
        if layout is not None:
            compose_cfg["layout"] = layout
        if fmt is not None:
            compose_cfg["format"] = fmt
            if fmt != "webm":
                compose_cfg["video_codec"] = None
            elif compose_cfg.get("video_codec") not in ("vp8", "vp9"):
                compose_cfg["video_codec"] = "vp8"
        if channels is not None:
            compose_cfg["channels"] = channels
        if width is not None:
            compose_cfg["width"] = width
        if height is not None:
            compose_cfg["height"] = height
        config = {**rec.config, "compose": compose_cfg, "progress": {"fraction": 0.0}}
        config.pop("audio_file_name", None)
        options = compose_options(config, base)
        options.validate()
        stem = PurePosixPath(rec.output_file_name).stem or rec.id
        stem = stem.split(".")[0]
        name = f"{stem}.{output_extension(options.format)}"
        if name == rec.output_file_name:
            name = f"{stem}_{options.effective_layout}.{output_extension(options.format)}"
        spans = [(int(s), int(e)) for s, e in rec.config.get("spans") or recording_spans(rec)]
        if not spans:
            raise Conflict("recording has no recorded span")
    try:
        result = await asyncio.to_thread(compose, base, spans, options, base / name)
    except RoomtapeError:
        raise
    except Exception as exc:
        raise InvalidInput(f"cannot compose: {exc}") from exc
    async with deps.sessions() as db:
        rec = await db.get(Recording, recording_id)
        assert rec is not None
        config.pop("progress", None)
        rec.config = {**config, "progress": {"fraction": 1.0, "done": True}}
        rec.output_file_name = name
        rec.file_size = result.size_bytes
        rec.status = "UPLOADING"
        # The old URLs point at the previous file: none until the new one is uploaded (no mismatched pair).
        rec.download_url = rec.download_url_expiry = rec.audio_download_url = None
        emit_status(db, rec)
        await db.commit()
        await db.refresh(rec)
        return rec


def remove_partial_renders(base: Path) -> list[Path]:
    """Delete the temporary files of renders that never finished (``.NAME.PID.THREAD.part``) in a directory."""
    removed = []
    for part in base.glob(".*.part") if base.is_dir() else []:
        part.unlink(missing_ok=True)
        removed.append(part)
    return removed


async def _fetch_tracks(deps: JobDeps, rec: Recording, rows: list[TrackFile], base: Path) -> None:
    """Bring back from storage the track files (and their manifests) whose local copy is gone."""
    wanted: set[str] = {r.path for r in rows}
    wanted |= {str(PurePosixPath(r.path).parent / MANIFEST_NAME) for r in rows}
    missing = [rel for rel in sorted(wanted) if not (base / rel).is_file()]
    if not missing:
        return
    choice = choice_for(deps, rec)
    try:
        for rel in missing:
            key = choice.key(rel)
            if not await choice.backend.exists(key):
                continue
            await download_file(choice.backend, key, base / rel)
    finally:
        await choice.backend.close()
