"""The recording service: live rooms' tracks in, segment files, ``TrackFile`` rows and webhooks out.

It bridges three worlds and keeps them apart:

- the media plane (event loop): it subscribes to the fan-out of every track a recording wants, like a
  subscriber, and turns room events (published, unpublished, muted, unmuted) into recorder signals;
- the recorders (worker threads): each recorded track belongs to one of a few writer threads, which owns its
  :class:`~roomtape.recording.segmenter.TrackRecorder`. Frames cross over in batches: nobody awaits the
  recorder's subscriptions; a collector task drains them every ``batch_seconds`` (20 ms) into one bounded
  queue per thread and wakes the thread once per tick, so the cost of the hand-off (task switches, thread
  wake-ups, the GIL changing hands) is paid per tick, not per frame, and the forwarding path never waits for
  a disk. Mute and unmute first collect what was queued, so frames stay on their side of the signal;
- the database (event loop): segment events come back from the threads and are written, in order, by one
  task: ``TrackFile`` rows, the ``Recording`` state machine and the VideoSDK webhooks in the outbox.

Recording state (DESIGN "Recording state machine"): INVOKED when asked for; RECORDING at the first frame
written (``started_time`` is that moment); on stop every open segment is closed, then UPLOADING with
``stop_reason``; :func:`roomtape.recording.finalize.prepare_upload` makes the files final and the uploader
(the server's ``jobs.submit_upload``) uploads them, then makes it UPLOADED and sends
``participant-track-recording-stopped``. A recording that never wrote a frame ends ERRORED with
``participant-track-recording-failed``.

Files are written under ``{data_dir}/recordings/{recording_id}/{session}/{participant}/{kind}/``
(:func:`roomtape.recording.finalize.recording_dir`); ``bucketDirPath`` is the storage prefix. With a spool
(:mod:`roomtape.recording.spool`) each segment is also sent there once it closes, and the stop flushes the rest,
so the recording's job can run on another host.

Not exported from :mod:`roomtape.recording`, which stays free of aiortc: import this module directly.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal, get_args

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from roomtape.db.models import Meeting, Participant, Recording, TrackFile, TranscriptSegment, utcnow
from roomtape.db.transcript_segments import meeting_transcribed, segment_id
from roomtape.errors import Conflict, NotFound
from roomtape.media.forward import Subscription
from roomtape.media.frame import EncodedFrame as MediaFrame
from roomtape.media.plane import LiveRoom, MediaPlane
from roomtape.media.room import PublishedTrack, RoomEvent, RoomEventName
from roomtape.media.tap import SenderReport
from roomtape.recording.finalize import recording_dir, remove_stt_spool, stt_spool_dir
from roomtape.recording.frame import CodecName, EncodedFrame
from roomtape.recording.manifest import MANIFEST_NAME, SegmentEntry, TrackKind
from roomtape.recording.segmenter import TrackRecorder, track_directory
from roomtape.recording.speech_cuts import SpeechCutter
from roomtape.recording.spool import Shipper
from roomtape.storage.validate import safe_dir_path
from roomtape.webhooks.outbox import emit
from roomtape.webhooks.videosdk_events import TrackRecordingEvent, track_recording_event

__all__ = [
    "ACTIVE_STATUSES",
    "TRACK_KINDS",
    "RecordingService",
    "StopReason",
    "TrackRecordingSpec",
    "bucket_base",
    "codec_of",
    "recordings_root",
    "to_recording_frame",
]

log = logging.getLogger(__name__)

TRACK_KINDS: Final[tuple[TrackKind, ...]] = get_args(TrackKind)
"""Every participant track kind, as VideoSDK spells them."""

ACTIVE_STATUSES: Final = ("INVOKED", "RECORDING", "PAUSED")
"""Recording statuses in which writers may still be running."""

StopReason = Literal["API_CALL", "INTERNAL_ERROR", "ALL_PEERS_LEFT"]
"""Why a recording stopped, as RealtimeKit names it."""

_CODECS: Final[dict[str, CodecName]] = {"audio/opus": "opus", "video/vp8": "vp8", "video/vp9": "vp9"}
_IDLE_CHECK_SECONDS: Final = 1.0


def codec_of(mime_type: str) -> CodecName | None:
    """The WebM codec for a negotiated MIME type, or None if WebM cannot carry it (e.g. H.264)."""
    return _CODECS.get(mime_type.lower())


def to_recording_frame(frame: MediaFrame, codec: CodecName) -> EncodedFrame:
    """Convert the media plane's frame into the recorder's (no copy of the payload).

    Args:
        frame: A frame from a track's fan-out.
        codec: The track's codec, from :func:`codec_of`.

    Returns:
        The same frame as :class:`roomtape.recording.frame.EncodedFrame`.
    """
    return EncodedFrame(
        frame.data,
        frame.rtp_timestamp,
        frame.time_base.denominator,
        frame.keyframe,
        frame.received_at,
        codec,
    )


def recordings_root(data_dir: Path) -> Path:
    """Where local recordings live: ``{data_dir}/recordings``."""
    return data_dir / "recordings"


def bucket_base(data_dir: Path, bucket_dir_path: str) -> Path:
    """The local directory of a ``bucketDirPath`` (empty: the recordings root itself)."""
    root = recordings_root(data_dir)
    return root / bucket_dir_path if bucket_dir_path else root


def clean_bucket_dir_path(value: str | None, field: str = "bucketDirPath") -> str:
    """Normalise a ``bucketDirPath``: a relative POSIX path that stays under the root; ``""`` for none.

    Raises:
        InvalidInput: ``..``, an absolute path, a backslash, a percent-encoded separator or a control
            character (:func:`roomtape.storage.validate.safe_dir_path`).
    """
    return safe_dir_path(value, field)


@dataclass(frozen=True, slots=True)
class TrackRecordingSpec:
    """What one track recording records and where its files go."""

    recording_id: str
    """The ``Recording`` row."""
    app_id: str
    """The app that owns it."""
    meeting_id: str
    """The meeting (VideoSDK ``roomId``)."""
    session_id: str
    """The live session being recorded."""
    participant_ids: frozenset[str] | None
    """Participants to record; None records everyone in the room."""
    kinds: frozenset[TrackKind]
    """Track kinds to record."""
    bucket_dir_path: str
    """Storage prefix of the files (``bucketDirPath``); locally they live in the recording's directory."""
    webhook_url: str | None = None
    """Per-request webhook URL (VideoSDK ``webhookUrl``)."""
    videosdk_events: bool = True
    """Send the ``participant-track-recording-*`` webhooks (one recorded participant and kind)."""

    def wants(self, participant_id: str, kind: str) -> bool:
        """Whether a track of this participant and kind belongs to the recording."""
        return kind in self.kinds and (self.participant_ids is None or participant_id in self.participant_ids)


# ---------------------------------------------------------------------------------------------------------
# writer threads


class _Worker:
    """A writer thread: runs recorder calls in order, and every second closes segments that went quiet.

    Calls queue up in a deque that the thread drains whenever it is woken: frames arrive in batches (one
    call per track per collector tick, see :meth:`RecordingService._collect`), so the event loop wakes the
    thread a few dozen times a second, not once per frame.
    """

    def __init__(self, name: str, max_frames: int) -> None:
        self._items: deque[tuple[Callable[..., object], tuple[Any, ...]] | None] = deque()
        self._wake = threading.Event()
        self._max_frames = max_frames
        self._queued = 0  # frames handed over (event loop only)
        self._written = 0  # frames processed (writer thread only)
        self._targets: set[_TrackTarget] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def offer_frames(self, target: _TrackTarget, frames: list[MediaFrame], codec: CodecName) -> bool:
        """Queue a batch of a track's frames unless too many are waiting; never blocks or wakes the thread.

        Returns:
            False if the batch was dropped (the thread is behind by more than ``max_frames``).
        """
        if self._queued - self._written >= self._max_frames:
            return False
        self._queued += len(frames)
        self._items.append((self._write_frames, (target, frames, codec)))
        return True

    def wake(self) -> None:
        """Wake the thread if anything is queued."""
        if self._items:
            self._wake.set()

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        """Queue a call that must not be dropped (control: mute, close, register) and wake the thread."""
        self._items.append((fn, args))
        self._wake.set()

    def call(self, fn: Callable[..., object], *args: Any) -> asyncio.Future[Any]:
        """Queue a call and return an asyncio future of its result."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn(*args))
            except BaseException as exc:
                future.set_exception(exc)

        self.submit(run)
        return asyncio.wrap_future(future)

    def register(self, target: _TrackTarget) -> None:
        self.submit(self._targets.add, target)

    def unregister(self, target: _TrackTarget) -> None:
        self.submit(self._targets.discard, target)

    def stop(self) -> None:
        self._items.append(None)
        self._wake.set()
        self._thread.join(timeout=10)

    def _write_frames(self, target: _TrackTarget, frames: list[MediaFrame], codec: CodecName) -> None:
        try:
            target.write_frames(frames, codec)
        except Exception as exc:
            target.failed(exc)
        finally:
            self._written += len(frames)

    def _run(self) -> None:
        items = self._items
        wake = self._wake
        next_check = time.monotonic() + _IDLE_CHECK_SECONDS
        while True:
            wake.wait(max(0.0, next_check - time.monotonic()))
            wake.clear()  # set again by any call queued from now on: nothing is missed
            while items:
                item = items.popleft()
                if item is None:
                    return
                fn, args = item
                try:
                    fn(*args)
                except Exception as exc:
                    target = getattr(fn, "__self__", None)
                    if isinstance(target, _TrackTarget):
                        target.failed(exc)
                    else:
                        log.exception("writer thread call failed")
            if time.monotonic() >= next_check:
                now = time.time()
                for target in list(self._targets):
                    try:
                        target.check_idle(now)
                    except Exception as exc:
                        target.failed(exc)
                next_check = time.monotonic() + _IDLE_CHECK_SECONDS


class _TrackTarget:
    """One participant track of one recording: its recorder (in a writer thread) and its subscription."""

    def __init__(
        self,
        service: RecordingService,
        active: _ActiveRecording,
        participant_id: str,
        kind: TrackKind,
        worker: _Worker,
    ) -> None:
        self.service = service
        self.active = active
        self.participant_id = participant_id
        self.kind: TrackKind = kind
        self.worker = worker
        self.directory = track_directory(active.base_dir, active.spec.session_id, participant_id, kind)
        self.recorder: TrackRecorder | None = None  # touched in the writer thread only
        self.cutter = SpeechCutter() if active.stt else None  # writer thread only
        self.track: PublishedTrack | None = None
        self.subscription: Subscription | None = None
        self.codec: CodecName | None = None
        self.last_report: SenderReport | None = None
        self.attached_before = False
        self.resync = False
        self.dropped = 0
        self.error: BaseException | None = None
        self._loop = service.loop
        worker.register(self)

    # -- writer thread ----------------------------------------------------------------------------------
    def _recorder(self) -> TrackRecorder:
        recorder = self.recorder
        if recorder is None:
            recorder = self.recorder = TrackRecorder(
                self.active.base_dir,
                self.active.spec.session_id,
                self.participant_id,
                self.kind,
                gap_seconds=self.service.gap_seconds,
                max_segment_seconds=self.service.segment_max_seconds,
                on_keyframe_needed=self._keyframe_needed,
                on_segment=self._segment,
            )
        return recorder

    def write_frames(self, frames: list[MediaFrame], codec: CodecName) -> None:
        if self.error is not None:
            return
        recorder = self._recorder()
        cutter = self.cutter
        if cutter is None:
            write = recorder.write
            for frame in frames:
                write(to_recording_frame(frame, codec))
            return
        for frame in frames:  # the transcription spool: silence is left out, long speech cut at a quiet moment
            converted = to_recording_frame(frame, codec)
            if not cutter.keep(converted):
                continue
            if cutter.cut_before(converted, recorder.open_since):
                recorder.on_restart()
            recorder.write(converted)

    def set_clock_mapping(self, ntp_epoch_seconds: float, rtp_timestamp: int) -> None:
        self._recorder().set_clock_mapping(ntp_epoch_seconds, rtp_timestamp)

    def on_mute(self) -> None:
        if self.recorder is not None:
            self.recorder.on_mute()

    def on_unmute(self) -> None:
        if self.recorder is not None:
            self.recorder.on_unmute()

    def on_restart(self) -> None:
        if self.recorder is not None:
            self.recorder.on_restart()

    def check_idle(self, now: float) -> None:
        if self.recorder is not None:
            self.recorder.check_idle(now)

    def close(self) -> list[SegmentEntry]:
        return self.recorder.close() if self.recorder is not None else []

    def _keyframe_needed(self) -> None:
        self._loop.call_soon_threadsafe(self.request_keyframe)

    def _segment(self, entry: SegmentEntry) -> None:
        size = (self.directory / entry.file).stat().st_size
        self._loop.call_soon_threadsafe(self.service._segment_event, self, entry, size, time.time())

    def failed(self, exc: BaseException) -> None:
        log.error("recording %s: %s/%s failed: %r", self.active.spec.recording_id, self.participant_id, self.kind, exc)
        if self.error is None:
            self.error = exc
            self._loop.call_soon_threadsafe(self.service._target_failed, self, exc)

    # -- event loop -----------------------------------------------------------------------------------
    def request_keyframe(self) -> None:
        if self.track is not None:
            self.track.fanout.request_keyframe()

    def attach(self, track: PublishedTrack) -> None:
        """Start recording ``track`` (a new publication of this participant and kind)."""
        self.detach()
        codec = codec_of(track.mime_type)
        if codec is None:
            self.failed(ValueError(f"{track.mime_type or 'unknown codec'} cannot be written to WebM"))
            return
        self.track = track
        self.codec = codec
        self.resync = False
        if self.attached_before:
            self.worker.submit(self.on_restart)  # a new publication is a restarted camera/microphone
        self.attached_before = True
        if track.muted:
            self.worker.submit(self.on_mute)
        # Nobody awaits this subscription: the service's collector drains it on a timer (see ``collect``).
        self.subscription = track.fanout.subscribe(max_frames=self.service.subscription_frames)
        self.service._attached.add(self)

    def detach(self) -> None:
        """Stop reading the current track (what it queued is written first; ``on_mute`` closes the segment)."""
        self.service._attached.discard(self)
        if self.subscription is not None:
            self.collect(self.track is not None and self.track.muted)
            self.worker.wake()
            self.subscription.close()
        self.subscription = None
        if self.track is not None:
            self.track = None
            self.worker.submit(self.on_mute)

    def collect(self, muted: bool) -> None:
        """Hand every frame queued on the subscription to the writer thread as one batch (no thread wake-up).

        Args:
            muted: The frames were sent while the track was muted (black frames, silence): drop them.
        """
        subscription, track, codec = self.subscription, self.track, self.codec
        if subscription is None or track is None or codec is None or not len(subscription):
            return
        frames = subscription.take()
        if muted:
            return
        report = track.tap.sender_report
        if report is not None and report is not self.last_report:
            self.last_report = report
            self.worker.submit(self.set_clock_mapping, report.wallclock, report.rtp_timestamp)
        if self.resync:
            # Dropped a batch earlier: video restarts at a keyframe (the ones before it lack references).
            start = next((i for i, f in enumerate(frames) if f.keyframe), len(frames))
            self.dropped += start
            del frames[:start]
            if not frames:
                return
            self.resync = False
        if not self.worker.offer_frames(self, frames, codec):
            # The writer thread is behind (a slow disk): drop, and for video restart at a keyframe.
            self.dropped += len(frames)
            if track.media == "video":
                self.resync = True
                track.fanout.request_keyframe()


@dataclass(eq=False)
class _ActiveRecording:
    """A running track recording: its spec and the tracks it records."""

    spec: TrackRecordingSpec
    base_dir: Path
    targets: dict[tuple[str, TrackKind], _TrackTarget] = field(default_factory=dict)
    started: bool = False
    """A first frame was written (the row is RECORDING)."""
    files: dict[tuple[str, TrackKind, int], str] = field(default_factory=dict)
    """TrackFile row id by (participant, kind, segment index)."""
    failed: bool = False
    stt: bool = False
    """The live transcription of a session, not a recording: no ``Recording`` or ``TrackFile`` rows, its files
    under :func:`~roomtape.recording.finalize.stt_spool_dir`, never shipped to the recording spool."""
    tap: bool = False
    """A livestream's tap (:meth:`RecordingService.start_tap`), not a recording: no rows, never shipped."""


# ---------------------------------------------------------------------------------------------------------
# the service


Finalizer = Callable[[str], Awaitable[None]]
Uploader = Callable[[str], Awaitable[None]]
Transcriber = Callable[[str], Awaitable[None]]


class RecordingService:
    """Track recordings of live rooms: starts, stops, and the writers in between.

    Args:
        media: The process's media plane.
        sessions: Database sessions.
        data_dir: The server's data directory; files go to ``{data_dir}/recordings/{recording_id}/...``.
        workers: Writer threads (each recorded track belongs to one; calls for a track run in order).
        queue_items: Frames a writer thread may have queued before new frames are dropped.
        subscription_frames: Frames the fan-out keeps for the recorder between two collector ticks.
        batch_seconds: How often queued frames are collected and handed to the writer threads in one batch
            per track (the delay between a frame's arrival and its muxing).
        gap_seconds: A pause in frames longer than this starts a new segment.
        segment_max_seconds: A segment longer than this is closed and the next one started (0: never).
        spool: Sends closed segments to the spool and flushes stopped recordings there
            (:mod:`roomtape.recording.spool`); default: none, the data directory is the spool.
        finalizer: Runs after stop (UPLOADING → UPLOADED); defaults to
            :func:`roomtape.recording.finalize.prepare_upload` then ``uploader``, or without an uploader the
            local :func:`roomtape.recording.finalize.finalize_recording`.
        uploader: Submits the upload of a recording that is UPLOADING (the server's ``jobs.submit_upload``).
        node_id: This process's node id (``roomtape.cluster``), written on every recording it starts.
        transcriber: Submits the transcription of a closed live audio segment (the server's
            ``jobs.submit_transcription``). With one, every session of a meeting that asks for transcription
            gets a transcription spool: its participants' audio tracks are written as segment files under
            :func:`~roomtape.recording.finalize.stt_spool_dir` (as a track recording would, packets muxed as
            received), one ``transcript_segments`` row each, and each closed segment is submitted
            (:mod:`roomtape.jobs.transcribe_live`). Without one, nothing is transcribed live.
        transcribe_all_meetings: Spool every meeting's audio (``ROOMTAPE_TRANSCRIBE_ALL_MEETINGS``).
    """

    def __init__(
        self,
        media: MediaPlane,
        sessions: async_sessionmaker[AsyncSession],
        data_dir: Path,
        *,
        workers: int = 2,
        queue_items: int = 4000,
        subscription_frames: int = 120,
        batch_seconds: float = 0.02,
        gap_seconds: float = 2.0,
        segment_max_seconds: float = 0.0,
        spool: Shipper | None = None,
        finalizer: Finalizer | None = None,
        uploader: Uploader | None = None,
        node_id: str | None = None,
        transcriber: Transcriber | None = None,
        transcribe_all_meetings: bool = False,
    ) -> None:
        self.media = media
        self.node_id = node_id
        self.sessions = sessions
        self.data_dir = data_dir
        self.gap_seconds = gap_seconds
        self.segment_max_seconds = segment_max_seconds
        self.spool = spool or Shipper(None)
        self.subscription_frames = subscription_frames
        self.batch_seconds = batch_seconds
        self._workers = [_Worker(f"roomtape-writer-{i}", queue_items) for i in range(max(1, workers))]
        self._next_worker = itertools.cycle(self._workers)
        self._active: dict[str, _ActiveRecording] = {}
        self._lock = asyncio.Lock()
        self._db_queue: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._db_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._room_handlers: dict[str, list[tuple[RoomEventName, Callable[[RoomEvent], object]]]] = {}
        self._attached: set[_TrackTarget] = set()
        self._collector: asyncio.Task[None] | None = None
        self._finalizer = finalizer
        self._uploader = uploader
        self._transcriber = transcriber
        self._transcribe_all = transcribe_all_meetings
        self._stt_sessions: dict[str, _ActiveRecording] = {}
        """The live transcription of each meeting's live session, by meeting id."""
        self._taps: dict[str, _ActiveRecording] = {}
        """Livestream taps by tap id."""
        self._closing = False
        self.loop: asyncio.AbstractEventLoop = asyncio.get_running_loop()

    # -- lifecycle --------------------------------------------------------------------------------------
    @classmethod
    async def open(
        cls, media: MediaPlane, sessions: async_sessionmaker[AsyncSession], data_dir: Path, **kw: Any
    ) -> RecordingService:
        """Make the service on the running loop and attach it to every room of ``media``.

        Args:
            media: The media plane.
            sessions: Database sessions.
            data_dir: The data directory.
            **kw: Options of :class:`RecordingService`.

        Returns:
            The running service.
        """
        service = cls(media, sessions, data_dir, **kw)
        loop = asyncio.get_running_loop()
        service._db_task = loop.create_task(service._db_writer(), name="roomtape-recording-db")
        service._collector = loop.create_task(service._collect(), name="roomtape-recording-collector")
        media.on_room_opened(service._room_opened)
        media.on_room_closing(service._room_closing)
        return service

    async def aclose(self) -> None:
        """Close every open segment (files end finalized) and stop the writer threads.

        Recordings stay in their state; the next start-up moves them on (``INTERNAL_ERROR``). Closed live
        transcription segments stay ``pending`` (the job runner is stopped by now): the next start-up queues them.
        """
        self._closing = True
        for active in [*self._active.values(), *self._stt_sessions.values(), *self._taps.values()]:
            await self._close_targets(active)
        self._active.clear()
        self._stt_sessions.clear()
        self._taps.clear()
        await self._db_queue.join()
        self.spool.stopping()  # a flush waiting for the spool gives up: the next start-up flushes it
        for task in list(self._tasks):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await task
        await self.spool.aclose()
        for background in (self._db_task, self._collector):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        for worker in self._workers:
            await asyncio.to_thread(worker.stop)

    def finalizer(self) -> Finalizer:
        """The step that follows a stop (UPLOADING → UPLOADED)."""
        if self._finalizer is not None:
            return self._finalizer
        from roomtape.recording.finalize import finalize_recording, prepare_upload

        uploader = self._uploader
        if uploader is None:

            async def local(recording_id: str) -> None:
                await finalize_recording(self.sessions, self.data_dir, recording_id)

            return local

        async def upload(recording_id: str) -> None:
            if await prepare_upload(self.sessions, self.data_dir, recording_id) and await self.flush_spool(
                recording_id
            ):
                await uploader(recording_id)

        return upload

    async def flush_spool(self, recording_id: str) -> bool:
        """Put a stopped recording's files in the spool (see :meth:`Shipper.flush`); False if shutting down."""
        return await self.spool.flush(self.sessions, self.data_dir, recording_id)

    def flush_pending_spool(self) -> None:
        """In the background, flush the stopped recordings a previous process left on disk (start-up)."""
        self._spawn(self.spool.flush_pending(self.sessions, self.data_dir))

    def is_active(self, recording_id: str) -> bool:
        """Whether the recording's writers are running in this process."""
        return recording_id in self._active

    def active_ids(self) -> list[str]:
        """Ids of the recordings running in this process."""
        return list(self._active)

    def dropped_frames(self, recording_id: str) -> int:
        """Frames a running recording dropped because its writer thread was behind."""
        active = self._active.get(recording_id)
        return sum(t.dropped for t in active.targets.values()) if active else 0

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- API operations ---------------------------------------------------------------------------------
    async def start_participant_track(
        self,
        db: AsyncSession,
        *,
        meeting: Meeting,
        participant: Participant,
        kind: TrackKind,
        webhook_url: str | None,
        bucket_dir_path: str | None,
        caller: dict[str, Any] | None = None,
    ) -> tuple[Recording, bool]:
        """Start recording one participant's track of one kind (VideoSDK's track recording).

        Idempotent: while a recording of this meeting, participant and kind runs, it is returned as is.
        The participant need not have published the kind yet: the recording waits for it.

        Args:
            db: A database session (committed here).
            meeting: The meeting; it must have a live room in this process.
            participant: The participant to record.
            kind: The kind of track.
            webhook_url: Where the ``participant-track-recording-*`` webhooks go, besides registered ones.
            bucket_dir_path: Storage prefix of the files (``bucketDirPath``).
            caller: ``start_reason.caller``.

        Returns:
            The recording, and whether it was created by this call.

        Raises:
            Conflict: The meeting has no live session here.
            InvalidInput: ``bucket_dir_path`` is not acceptable.
        """
        bucket = clean_bucket_dir_path(bucket_dir_path)
        async with self._lock:
            running = await db.scalar(
                select(Recording).where(
                    Recording.meeting_id == meeting.id,
                    Recording.kind == "track",
                    Recording.participant_id == participant.id,
                    Recording.track_kind == kind,
                    Recording.status.in_(ACTIVE_STATUSES),
                )
            )
            if running is not None and running.id in self._active:
                return running, False
            live = self._live_room(meeting.id)
            recording = Recording(
                app_id=meeting.app_id,
                meeting_id=meeting.id,
                session_id=live.session_id,
                kind="track",
                status="INVOKED",
                node_id=self.node_id,
                participant_id=participant.id,
                track_kind=kind,
                output_file_name=str(PurePosixPath(bucket or ".", live.session_id, participant.id, kind)),
                start_reason={"reason": "API_CALL", "caller": caller or {"type": "ORGANIZATION"}},
                config={
                    "api": "videosdk",
                    "file_format": "webm",
                    "webhook_url": webhook_url,
                    "bucket_dir_path": bucket,
                    "participant_ids": [participant.id],
                    "kinds": [kind],
                },
            )
            db.add(recording)
            await db.flush()
            spec = TrackRecordingSpec(
                recording_id=recording.id,
                app_id=meeting.app_id,
                meeting_id=meeting.id,
                session_id=live.session_id,
                participant_ids=frozenset({participant.id}),
                kinds=frozenset({kind}),
                bucket_dir_path=bucket,
                webhook_url=webhook_url,
            )
            self._emit(db, spec, participant.id, kind, "participant-track-recording-starting")
            await db.commit()
            self._begin(spec, live)
            return recording, True

    async def start_meeting_tracks(
        self,
        db: AsyncSession,
        *,
        meeting: Meeting,
        participant_ids: Iterable[str] | None,
        kinds: Iterable[TrackKind],
        caller: dict[str, Any] | None = None,
    ) -> Recording:
        """Start recording the tracks of a meeting's participants (RealtimeKit's track recording).

        Files go to ``{recordings}/{recording_id}/{session}/{participant}/{kind}/``; they are uploaded to the
        meeting's ``recording_config.storage_config`` (under its ``path``) if it has one, else to the server's
        default storage under ``{recording_id}/``.

        Args:
            db: A database session (committed here).
            meeting: The meeting; it must have a live room in this process.
            participant_ids: Participants to record (None: everyone, including later joiners).
            kinds: Kinds of track to record.
            caller: ``start_reason.caller``.

        Returns:
            The new recording.

        Raises:
            Conflict: The meeting has no live session here.
        """
        async with self._lock:
            live = self._live_room(meeting.id)
            ids = sorted(set(participant_ids)) if participant_ids is not None else None
            kind_list = sorted(set(kinds))
            recording = Recording(
                app_id=meeting.app_id,
                meeting_id=meeting.id,
                session_id=live.session_id,
                kind="track",
                status="INVOKED",
                node_id=self.node_id,
                start_reason={"reason": "API_CALL", "caller": caller or {"type": "ORGANIZATION"}},
                config={"api": "realtimekit", "file_format": "webm", "participant_ids": ids, "kinds": kind_list},
            )
            meeting_config = meeting.recording_config or {}
            if meeting_config.get("storage_config"):
                recording.storage_config = dict(meeting_config["storage_config"])
            if meeting_config.get("realtimekit_bucket_config") is not None:
                recording.config = {
                    **recording.config,
                    "realtimekit_bucket_config": meeting_config["realtimekit_bucket_config"],
                }
            db.add(recording)
            await db.flush()
            recording.config = {**recording.config, "bucket_dir_path": recording.id}
            recording.output_file_name = f"{recording.id}/{live.session_id}"
            spec = TrackRecordingSpec(
                recording_id=recording.id,
                app_id=meeting.app_id,
                meeting_id=meeting.id,
                session_id=live.session_id,
                participant_ids=frozenset(ids) if ids is not None else None,
                kinds=frozenset(kind_list),
                bucket_dir_path=recording.id,
                videosdk_events=False,
            )
            await db.commit()
            self._begin(spec, live)
            return recording

    async def stop_participant_track(
        self, db: AsyncSession, *, meeting_id: str, participant_id: str, kind: TrackKind
    ) -> Recording:
        """Stop the running recording of a participant's track of one kind.

        Args:
            db: A database session, for the look-up.
            meeting_id: The meeting.
            participant_id: The participant.
            kind: The kind of track.

        Returns:
            The recording after the stop (UPLOADING, or ERRORED if nothing was recorded).

        Raises:
            Conflict: Nothing of this participant and kind is being recorded.
        """
        recording_id = await db.scalar(
            select(Recording.id).where(
                Recording.meeting_id == meeting_id,
                Recording.kind == "track",
                Recording.participant_id == participant_id,
                Recording.track_kind == kind,
                Recording.status.in_(ACTIVE_STATUSES),
            )
        )
        if recording_id is None or recording_id not in self._active:
            raise Conflict(f"no {kind} track recording is running for participant {participant_id}")
        return await self.stop_recording(recording_id, "API_CALL")

    async def stop_recording(
        self, recording_id: str, reason: StopReason, caller: dict[str, Any] | None = None
    ) -> Recording:
        """Stop a running track recording: close every open segment, then move the row on.

        Sends ``-stopping`` at once; once every segment is closed and its row written, the recording
        becomes UPLOADING and the finalizer runs in the background (UPLOADED, ``-stopped``). If no frame
        was ever written it becomes ERRORED (``-failed``).

        Args:
            recording_id: A recording running in this process.
            reason: ``stop_reason.reason``.
            caller: ``stop_reason.caller``.

        Returns:
            The recording row after the stop.

        Raises:
            Conflict: The recording is not running here.
        """
        async with self._lock:
            active = self._active.pop(recording_id, None)
        if active is None:
            raise Conflict("recording is not running")
        spec = active.spec
        async with self.sessions() as db:
            recording = await db.get(Recording, recording_id)
            if recording is None:
                raise NotFound("recording not found")
            recording.stop_reason = {"reason": reason, "caller": caller or {"type": "ORGANIZATION"}}
            recording.stopped_time = utcnow()
            for participant_id, kind in self._event_subjects(active):
                self._emit(db, spec, participant_id, kind, "participant-track-recording-stopping")
            await db.commit()
        await self._close_targets(active)
        await self._db_queue.join()  # every segment row is written
        async with self.sessions() as db:
            recording = await db.get(Recording, recording_id)
            assert recording is not None
            files = (await db.scalars(select(TrackFile).where(TrackFile.recording_id == recording_id))).all()
            if not files:
                recording.status = "ERRORED"
                recording.error = recording.error or "no media was recorded"
                for participant_id, kind in self._event_subjects(active):
                    self._emit(db, spec, participant_id, kind, "participant-track-recording-failed")
            else:
                recording.status = "UPLOADING"
                recording.file_size = sum(f.size for f in files)
                if recording.started_time is not None and recording.stopped_time is not None:
                    seconds = (recording.stopped_time - recording.started_time).total_seconds()
                    recording.recording_duration = max(0, round(seconds - recording.paused_seconds))
            await db.commit()
            await db.refresh(recording)
            finalize = recording.status == "UPLOADING"
        if finalize:
            self._spawn(self.finalizer()(recording_id))
        return recording

    # -- livestream taps ------------------------------------------------------------------------------
    async def start_tap(self, tap_id: str, meeting_id: str, base_dir: Path) -> LiveRoom:
        """Write every track of the meeting's live session to files for a live render, without a recording.

        The files are laid out as a composite recording's (``{base_dir}/{session}/{participant}/{kind}/`` with
        manifests, so a `~roomtape.recording.compose.feed.LiveFeed` follows them), but there is no
        ``Recording`` or ``TrackFile`` row, no webhook and nothing goes to the spool: the caller (the livestream
        engine) deletes the directory when it is done. The tap ends with :meth:`stop_tap`, or by itself when the
        session's room closes.

        Args:
            tap_id: The caller's id for it (the livestream id).
            meeting_id: The meeting; it must have a live room in this process.
            base_dir: Where the track files go.

        Returns:
            The live room tapped.

        Raises:
            Conflict: The meeting has no live session here, or ``tap_id`` is tapping already.
        """
        async with self._lock:
            live = self._live_room(meeting_id)
            if tap_id in self._taps:
                raise Conflict(f"{tap_id} is tapping meeting {meeting_id} already")
            spec = TrackRecordingSpec(
                recording_id=tap_id,
                app_id=live.app_id,
                meeting_id=meeting_id,
                session_id=live.session_id,
                participant_ids=None,
                kinds=frozenset(TRACK_KINDS),
                bucket_dir_path="",
                videosdk_events=False,
            )
            active = _ActiveRecording(spec=spec, base_dir=base_dir, tap=True)
            self._taps[tap_id] = active
            for track in live.room.tracks():
                if spec.wants(track.participant_id, track.kind):
                    self._target(active, track.participant_id, track.kind).attach(track)
            return live

    async def stop_tap(self, tap_id: str) -> None:
        """Close a tap's open segments (the files stay; a tap that is gone already is a no-op)."""
        active = self._taps.pop(tap_id, None)
        if active is not None:
            await self._close_targets(active)

    def tapping(self, tap_id: str) -> bool:
        """Whether the tap is running."""
        return tap_id in self._taps

    # -- rooms ----------------------------------------------------------------------------------------
    def _live_room(self, meeting_id: str) -> LiveRoom:
        live = self.media.get(meeting_id)
        if live is None:
            raise Conflict(f"meeting {meeting_id} has no live session: start recording once participants joined")
        return live

    def _begin(self, spec: TrackRecordingSpec, live: LiveRoom) -> None:
        active = _ActiveRecording(spec=spec, base_dir=recording_dir(self.data_dir, spec.recording_id))
        self._active[spec.recording_id] = active
        if spec.participant_ids is not None:
            for participant_id in spec.participant_ids:
                for kind in spec.kinds:
                    self._target(active, participant_id, kind)  # waits for the track to be published
        for track in live.room.tracks():
            if spec.wants(track.participant_id, track.kind):
                self._target(active, track.participant_id, track.kind).attach(track)

    def _target(self, active: _ActiveRecording, participant_id: str, kind: TrackKind) -> _TrackTarget:
        key = (participant_id, kind)
        target = active.targets.get(key)
        if target is None:
            target = _TrackTarget(self, active, participant_id, kind, next(self._next_worker))
            active.targets[key] = target
        return target

    async def _collect(self) -> None:
        """Every ``batch_seconds``: move each recorded track's queued frames to its writer thread, in one batch."""
        interval = self.batch_seconds
        loop = asyncio.get_running_loop()
        next_tick = loop.time()
        while True:
            next_tick += interval
            delay = next_tick - loop.time()
            if delay < 0:  # the loop was busy: do not try to catch up with a burst of ticks
                next_tick, delay = loop.time(), 0.0
            await asyncio.sleep(delay)
            for target in list(self._attached):
                track = target.track
                target.collect(track is not None and track.muted)
            for worker in self._workers:
                worker.wake()

    def _active_for(self, meeting_id: str, session_id: str) -> list[_ActiveRecording]:
        """The recordings and the transcription spool of the session."""
        return [
            a
            for a in (*self._active.values(), *self._stt_sessions.values(), *self._taps.values())
            if a.spec.meeting_id == meeting_id and a.spec.session_id == session_id
        ]

    def _room_opened(self, live: LiveRoom) -> None:
        def on_published(event: RoomEvent) -> None:
            track = event.track
            if track is None:
                return
            for active in self._active_for(live.meeting_id, live.session_id):
                if active.spec.wants(track.participant_id, track.kind):
                    self._target(active, track.participant_id, track.kind).attach(track)

        def on_unpublished(event: RoomEvent) -> None:
            for target in self._targets_of(live, event):
                target.detach()

        def on_muted(event: RoomEvent) -> None:
            for target in self._targets_of(live, event):
                target.collect(muted=False)  # what came before the mute belongs to the segment
                target.worker.submit(target.on_mute)

        def on_unmuted(event: RoomEvent) -> None:
            for target in self._targets_of(live, event):
                target.collect(muted=True)  # sent while muted
                target.worker.submit(target.on_unmute)
                target.request_keyframe()

        handlers: list[tuple[RoomEventName, Callable[[RoomEvent], object]]] = [
            ("track_published", on_published),
            ("track_unpublished", on_unpublished),
            ("track_muted", on_muted),
            ("track_unmuted", on_unmuted),
        ]
        for name, handler in handlers:
            live.room.events.on(name, handler)
        self._room_handlers[live.meeting_id] = handlers
        if self._transcriber is not None:
            self._spawn(self._start_live_transcription(live))

    def _targets_of(self, live: LiveRoom, event: RoomEvent) -> list[_TrackTarget]:
        track = event.track
        if track is None:
            return []
        return [
            target
            for active in self._active_for(live.meeting_id, live.session_id)
            if (target := active.targets.get((track.participant_id, track.kind))) is not None and target.track is track
        ]

    def _room_closing(self, live: LiveRoom) -> None:
        for name, handler in self._room_handlers.pop(live.meeting_id, []):
            live.room.events.off(name, handler)
        for active in self._active_for(live.meeting_id, live.session_id):
            if active.stt:
                self._spawn(self._stop_live_transcription(live.meeting_id, active))
            elif active.tap:
                self._spawn(self.stop_tap(active.spec.recording_id))
            else:
                self._spawn(self.stop_recording(active.spec.recording_id, "ALL_PEERS_LEFT"))

    # -- live transcription -------------------------------------------------------------------------------
    async def _start_live_transcription(self, live: LiveRoom) -> None:
        """Spool the session's audio tracks for live transcription if its meeting asks for it."""
        try:
            async with self.sessions() as db:
                meeting = await db.get(Meeting, live.meeting_id)
                wanted = meeting_transcribed(meeting, self._transcribe_all)
                app_id = meeting.app_id if meeting is not None else ""
        except Exception:
            log.exception("meeting %s: cannot tell whether to transcribe it", live.meeting_id)
            return
        current = self.media.get(live.meeting_id)
        if not wanted or self._closing or current is None or current.session_id != live.session_id:
            return  # not wanted, or the room closed meanwhile
        if live.meeting_id in self._stt_sessions:
            return
        spec = TrackRecordingSpec(
            recording_id=f"stt-spool-{live.session_id}",
            app_id=app_id,
            meeting_id=live.meeting_id,
            session_id=live.session_id,
            participant_ids=None,
            kinds=frozenset({"audio"}),
            bucket_dir_path="",
            videosdk_events=False,
        )
        active = _ActiveRecording(spec=spec, base_dir=stt_spool_dir(self.data_dir), stt=True)
        self._stt_sessions[live.meeting_id] = active
        for track in live.room.tracks():
            if spec.wants(track.participant_id, track.kind):
                self._target(active, track.participant_id, track.kind).attach(track)
        log.info("meeting %s: session %s is transcribed live", live.meeting_id, live.session_id)

    async def _stop_live_transcription(self, meeting_id: str, active: _ActiveRecording) -> None:
        """The session's room closed: close its open transcription segments (their rows become ``pending``)."""
        if self._stt_sessions.get(meeting_id) is active:
            del self._stt_sessions[meeting_id]
        await self._close_targets(active)
        await self._db_queue.join()  # the last segments' rows are written
        try:  # every segment may be transcribed already (the jobs ran before the session ended)
            await remove_stt_spool(self.sessions, self.data_dir, active.spec.session_id)
        except Exception:
            log.exception("session %s: removing its transcription directory failed", active.spec.session_id)

    def transcribing_live(self, meeting_id: str) -> bool:
        """Whether the meeting's live session is being transcribed live (its audio spooled)."""
        return meeting_id in self._stt_sessions

    async def _write_stt_segment(self, target: _TrackTarget, entry: SegmentEntry) -> None:
        """A transcription segment opened (row ``recording``) or closed (``pending``, and its job submitted)."""
        spec = target.active.spec
        row_id = segment_id(spec.session_id, target.participant_id, target.kind, entry.index)
        complete = entry.status == "complete"
        async with self.sessions() as db:
            row = await db.get(TranscriptSegment, row_id)
            if row is None:
                row = TranscriptSegment(
                    id=row_id,
                    app_id=spec.app_id,
                    session_id=spec.session_id,
                    participant_id=target.participant_id,
                    kind=target.kind,
                    index=entry.index,
                    path=(target.directory / entry.file).relative_to(self.data_dir).as_posix(),
                    node_id=self.node_id,
                    status="recording",
                    attempts=0,
                    items=0,
                )
                db.add(row)
            row.start_epoch_ms, row.end_epoch_ms = entry.start_epoch_ms, entry.end_epoch_ms
            submit = complete and row.status == "recording"
            if submit:
                row.status = "pending"
            await db.commit()
        if submit and self._transcriber is not None and not self._closing:
            try:
                await self._transcriber(row_id)
            except Exception:  # the row is pending: the next start-up queues it
                log.exception("submitting the transcription of segment %s failed", row_id)

    async def _close_targets(self, active: _ActiveRecording) -> None:
        for target in active.targets.values():
            target.detach()
        results = await asyncio.gather(
            *(target.worker.call(target.close) for target in active.targets.values()), return_exceptions=True
        )
        for target, result in zip(active.targets.values(), results, strict=True):
            target.worker.unregister(target)
            if isinstance(result, BaseException):
                log.error("recording %s: closing %s failed: %r", active.spec.recording_id, target.directory, result)
                active.failed = True

    # -- database -------------------------------------------------------------------------------------
    @staticmethod
    def _event_subjects(active: _ActiveRecording) -> list[tuple[str, TrackKind]]:
        if not active.spec.videosdk_events:
            return []
        return sorted(active.targets) or [
            (p, k) for p in sorted(active.spec.participant_ids or ()) for k in sorted(active.spec.kinds)
        ]

    @staticmethod
    def _emit(
        db: AsyncSession, spec: TrackRecordingSpec, participant_id: str, kind: str, event: TrackRecordingEvent
    ) -> None:
        if not spec.videosdk_events:
            return
        payload = track_recording_event(
            event, meeting_id=spec.meeting_id, session_id=spec.session_id, participant_id=participant_id, kind=kind
        )
        emit(db, spec.app_id, event, payload, target_url=spec.webhook_url, recording_id=spec.recording_id)

    async def _db_writer(self) -> None:
        while True:
            job = await self._db_queue.get()
            try:
                await job()
            except Exception:
                log.exception("recording database update failed")
            finally:
                self._db_queue.task_done()

    def _segment_event(self, target: _TrackTarget, entry: SegmentEntry, size: int, at: float) -> None:
        if target.active.tap:
            return  # a livestream's files: the live render reads the manifests, nothing else needs to know
        if target.active.stt:
            self._db_queue.put_nowait(lambda: self._write_stt_segment(target, entry))
            return  # transcription-only audio: read by the STT job where it was written, never shipped
        self._db_queue.put_nowait(lambda: self._write_segment(target, entry, size, at))
        if entry.status == "complete":
            directory = PurePosixPath(target.active.spec.session_id, target.participant_id, target.kind)
            rels = [str(directory / entry.file), str(directory / MANIFEST_NAME)]
            self.spool.ship(target.active.spec.recording_id, target.active.base_dir, rels)

    def _target_failed(self, target: _TrackTarget, exc: BaseException) -> None:
        active = target.active
        active.failed = True
        if active.tap:
            return  # logged by the target; the stream goes on with the other tracks
        message = f"{target.participant_id}/{target.kind}: {exc}"

        async def record() -> None:
            async with self.sessions() as db:
                recording = await db.get(Recording, active.spec.recording_id)
                if recording is not None:
                    recording.error = message[:2000]
                    await db.commit()

        self._db_queue.put_nowait(record)
        if active.spec.videosdk_events and active.spec.recording_id in self._active:
            # One participant and kind: nothing else to record. A whole-meeting recording keeps the others.
            self._spawn(self.stop_recording(active.spec.recording_id, "INTERNAL_ERROR"))

    async def _write_segment(self, target: _TrackTarget, entry: SegmentEntry, size: int, at: float) -> None:
        active = target.active
        spec = active.spec
        key = (target.participant_id, target.kind, entry.index)
        async with self.sessions() as db:
            row_id = active.files.get(key)
            row = await db.get(TrackFile, row_id) if row_id is not None else None
            if row is None:
                row = TrackFile(
                    recording_id=spec.recording_id,
                    session_id=spec.session_id,
                    participant_id=target.participant_id,
                    kind=target.kind,
                    index=entry.index,
                    codec=entry.codec,
                    path=str(PurePosixPath(spec.session_id, target.participant_id, target.kind, entry.file)),
                )
                db.add(row)
            apply_segment(row, entry, size)
            await db.flush()
            active.files[key] = row.id
            if not active.started:
                active.started = True
                recording = await db.get(Recording, spec.recording_id)
                if recording is not None and recording.status == "INVOKED":
                    recording.status = "RECORDING"
                    recording.started_time = datetime.fromtimestamp(at, UTC)
                    self._emit(db, spec, target.participant_id, target.kind, "participant-track-recording-started")
            await db.commit()


def apply_segment(row: TrackFile, entry: SegmentEntry, size: int) -> None:
    """Copy a manifest entry's figures into its ``TrackFile`` row.

    Args:
        row: The row of the segment.
        entry: The segment's manifest entry.
        size: The file's size on disk, bytes.
    """
    row.codec = entry.codec
    row.size = size
    row.started_at = datetime.fromtimestamp(entry.start_epoch_ms / 1000, UTC)
    row.ended_at = datetime.fromtimestamp(entry.end_epoch_ms / 1000, UTC)
    row.first_rtp_timestamp = entry.first_rtp
    row.last_rtp_timestamp = entry.last_rtp
    row.frames = entry.frames
    row.keyframes = entry.keyframes
    row.gaps = [{"offset_ms": g.offset_ms, "duration_ms": g.duration_ms} for g in entry.gaps]
    row.status = "complete" if entry.status == "complete" else "recording"
