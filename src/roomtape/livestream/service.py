"""Livestreams as RealtimeKit has them: rows, statuses, ``livestreaming.statusUpdate`` webhooks, on top of the engine.

One `LivestreamService` per server process (``ctx.livestream_service``), beside the `LivestreamEngine` it drives.
It runs where the meeting's room is (the cluster's forwarder sends start and stop there).

- ``start``: the RTMP URL (the call's ``rtmp_url``, else the meeting's
  ``recording_config.live_streaming_config.rtmp_url``) must be ``rtmp://``/``rtmps://`` and its host must
  resolve to addresses the outbound policy allows (400 otherwise, as for webhook and storage hosts); a meeting
  without a live room or streaming already is refused (409); then an INVOKED livestream and its session are
  written, and the engine starts (HLS in ``{data_dir}/hls/{livestream_id}``; an unreachable RTMP host: 400).
  If the engine refuses, the rows are deleted again: nothing is left started.
- The engine's status callbacks move the livestream to LIVE (first HLS segment listed: the session's
  ``started_time``), IDLE (stopped, or the session ended: ``stopped_time``, ``ingest_seconds``) or ERRORED
  (``err_message``), each with one ``livestreaming.statusUpdate`` in the webhook outbox (INVOKED too).
- ``live_stream_on_start`` meetings start a livestream when their room opens (``start_reason``
  ``LIVE_STREAM_ON_START``); one that cannot start is written ERRORED with the reason, and announced.
- HLS files stay ``hls_keep_seconds`` after the end (the playlist has its end tag), then are removed; at
  start-up, directories of livestreams not running are removed and running livestreams of nodes that are
  gone become ERRORED.
- Viewer seconds: every HLS segment served through a playback URL adds its duration to the session's
  ``viewer_seconds`` (written in batches and at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shutil
from collections.abc import Awaitable, Callable, Collection
from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from roomtape.db import livestreams as q
from roomtape.db.models import Livestream, LivestreamSession, Meeting
from roomtape.domain.ids import new_id
from roomtape.errors import Conflict, InvalidInput, NotFound, RoomtapeError
from roomtape.jobs.deps import JobDeps
from roomtape.livestream.engine import AlreadyStreaming, LivestreamEngine, NoLiveRoom
from roomtape.livestream.playback import HlsSigner
from roomtape.media.plane import LiveRoom, MediaPlane
from roomtape.webhooks.outbound import check_rtmp_url
from roomtape.webhooks.outbox import emit

__all__ = ["EVENT", "LivestreamService", "hls_root", "ingest_server_of", "status_payload"]

log = logging.getLogger(__name__)

EVENT: Final = "livestreaming.statusUpdate"
DEFAULT_SIZE: Final = (1280, 720)
_VIEWER_FLUSH_SECONDS: Final = 30.0
_EXTINF = re.compile(r"#EXTINF:([\d.]+),?\s*\n(seg\d+\.ts)")


def hls_root(data_dir: Path) -> Path:
    """Where the HLS output of every livestream goes: ``{data_dir}/hls/{livestream_id}/``."""
    return data_dir / "hls"


def ingest_server_of(rtmp_url: str) -> str:
    """The push target as the API shows it: the URL without its last path segment (the stream key) or query."""
    parts = urlsplit(rtmp_url)
    path = parts.path.rsplit("/", 1)[0] if parts.path.count("/") > 1 else parts.path
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, path, "", ""))


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def status_payload(row: Livestream, run: LivestreamSession | None, playback_url: str | None) -> dict[str, Any]:
    """Body of ``livestreaming.statusUpdate``: the event, the meeting and the livestream (with its session)."""
    return {
        "event": EVENT,
        "meeting": {"id": row.meeting_id, "sessionId": row.session_id},
        "livestream": {
            "id": row.id,
            "name": row.name,
            "status": row.status,
            "meetingId": row.meeting_id,
            "ingestServer": row.ingest_server,
            "playbackUrl": playback_url,
            "startReason": row.start_reason,
            "sessionId": run.id if run is not None else None,
            "invokedTime": _iso(run.invoked_time) if run is not None else None,
            "startedTime": _iso(run.started_time) if run is not None else None,
            "stoppedTime": _iso(run.stopped_time) if run is not None else None,
            "ingestSeconds": run.ingest_seconds if run is not None else None,
            "errMessage": run.err_message if run is not None else None,
        },
    }


class LivestreamService:
    """RealtimeKit livestreams of this process's rooms (see the module docstring).

    Args:
        deps: Settings, database and keys.
        engine: The livestream engine.
        media: The media plane (``live_stream_on_start`` hooks into its room openings).
        node_id: This process's node id (written on the rows it streams).
        events_committed: Wakes the webhook deliverer after an event was committed.
        hls_keep_seconds: How long a stream's HLS files stay after it ended.
    """

    def __init__(
        self,
        deps: JobDeps,
        engine: LivestreamEngine,
        media: MediaPlane,
        node_id: str,
        events_committed: Callable[[], None],
        *,
        hls_keep_seconds: float = 600.0,
    ) -> None:
        self.deps = deps
        self.engine = engine
        self.media = media
        self.node_id = node_id
        self.events_committed = events_committed
        self.hls_keep_seconds = hls_keep_seconds
        self.signer = HlsSigner(deps.secret_key, deps.settings.resolved_public_url)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._viewed: dict[str, float] = {}
        self._closing = False

    @property
    def hls_root(self) -> Path:
        """``{data_dir}/hls``."""
        return hls_root(self.deps.settings.data_dir)

    def hls_dir(self, livestream_id: str) -> Path:
        """The livestream's HLS directory."""
        return self.hls_root / livestream_id

    def playback_url(self, livestream_id: str) -> str:
        """A signed playlist URL (valid ``download_url_ttl_secs``)."""
        return self.signer.playback_url(livestream_id, self.deps.settings.download_url_ttl_secs)

    # -- lifecycle ----------------------------------------------------------------------------------------
    async def open(self, live_nodes: Collection[str]) -> None:
        """Start-up: livestreams of nodes that are gone become ERRORED; HLS files of ended ones are removed."""
        async with self.deps.sessions() as db:
            ended = await q.end_orphans(db, [*live_nodes, self.node_id])
            for livestream_id in ended:
                await self._announce(db, livestream_id)
            await db.commit()
        if ended:
            log.warning("livestreams %s were running on nodes that are gone: ERRORED", ended)
            self.events_committed()
        root = self.hls_root
        if root.is_dir():
            async with self.deps.sessions() as db:
                for path in root.iterdir():
                    row = await db.get(Livestream, path.name)
                    if row is None or row.status not in q.RUNNING:
                        await asyncio.to_thread(shutil.rmtree, path, True)
        self.media.on_room_opened(self._room_opened)

    async def aclose(self) -> None:
        """Stop the streams (the engine ends them IDLE) and cancel the pending clean-ups."""
        self._closing = True
        await self.engine.aclose()
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- start / stop -------------------------------------------------------------------------------------
    async def start(
        self,
        meeting: Meeting,
        *,
        name: str | None = None,
        width: int | None = None,
        height: int | None = None,
        rtmp_url: str | None = None,
        reason: str = "API_CALL",
    ) -> Livestream:
        """Start live-streaming the meeting's session (see the module docstring for what it refuses).

        Raises:
            InvalidInput: A bad size, or an RTMP URL that is not rtmp(s), private, or unreachable.
            Conflict: No live room here, or the meeting streams already.
        """
        if rtmp_url is None:
            rtmp_url = _meeting_rtmp_url(meeting)
        w, h = width or DEFAULT_SIZE[0], height or DEFAULT_SIZE[1]
        if rtmp_url is not None:
            await check_rtmp_url(self.deps.settings, rtmp_url)
        async with self._lock:
            running = self.engine.active(meeting.id)
            if running is not None:
                raise AlreadyStreaming(f"meeting {meeting.id} is live-streamed already (livestream {running})")
            live = self.media.get(meeting.id)
            if live is None:
                raise NoLiveRoom(f"meeting {meeting.id} has no live session: start the livestream once someone joined")
            livestream_id = new_id()
            async with self.deps.sessions() as db:
                await self._insert(db, livestream_id, meeting, live, name, rtmp_url, (w, h), reason)
                await db.commit()
            hls = self.hls_dir(livestream_id)
            try:
                await self.engine.start(
                    livestream_id=livestream_id,
                    app_id=meeting.app_id,
                    meeting_id=meeting.id,
                    hls_dir=hls,
                    rtmp_url=rtmp_url,
                    width=w,
                    height=h,
                    on_status=lambda status, why: self._on_status(livestream_id, status, why),
                )
            except BaseException:
                async with self.deps.sessions() as db:
                    await q.delete_livestream(db, livestream_id)
                    await db.commit()
                await asyncio.to_thread(shutil.rmtree, hls, True)
                raise
            async with self.deps.sessions() as db:
                await self._announce(db, livestream_id)
                await db.commit()
                row = await db.get(Livestream, livestream_id)
            self.events_committed()
        assert row is not None
        log.info("livestream %s of meeting %s started (%s)", livestream_id, meeting.id, reason)
        return row

    async def _insert(
        self,
        db: Any,
        livestream_id: str,
        meeting: Meeting,
        live: LiveRoom,
        name: str | None,
        rtmp_url: str | None,
        size: tuple[int, int],
        reason: str,
    ) -> None:
        await q.create_livestream(
            db,
            livestream_id=livestream_id,
            app_id=meeting.app_id,
            meeting_id=meeting.id,
            session_id=live.session_id,
            name=name,
            rtmp_url_sealed=self.deps.box.seal(rtmp_url) if rtmp_url else None,
            ingest_server=ingest_server_of(rtmp_url) if rtmp_url else None,
            width=size[0],
            height=size[1],
            start_reason=reason,
            node_id=self.node_id,
        )

    async def stop(self, meeting_id: str) -> str:
        """Stop the meeting's livestream; returns its id once it is IDLE.

        Raises:
            NotFound: The meeting streams nothing here.
        """
        livestream_id = self.engine.active(meeting_id)
        if livestream_id is None:
            raise NotFound(f"meeting {meeting_id} has no active livestream")
        await self.engine.stop(livestream_id)
        return livestream_id

    # -- status -------------------------------------------------------------------------------------------
    async def _announce(self, db: Any, livestream_id: str) -> None:
        row = await db.get(Livestream, livestream_id)
        if row is None:
            return
        run = await q.session_of(db, livestream_id)
        emit(db, row.app_id, EVENT, status_payload(row, run, self.playback_url(row.id)))

    async def _on_status(self, livestream_id: str, status: str, reason: str | None) -> None:
        async with self.deps.sessions() as db:
            if status in ("IDLE", "ERRORED"):
                seconds = self._viewed.pop(livestream_id, 0.0)
                if seconds:
                    await q.add_viewer_seconds(db, livestream_id, seconds)
            changed = await q.set_status(db, livestream_id, status, reason)
            if changed is None:
                return
            await self._announce(db, livestream_id)
            await db.commit()
        self.events_committed()
        log.info("livestream %s: %s%s", livestream_id, status, f" ({reason})" if reason else "")
        if status in ("IDLE", "ERRORED") and not self._closing:
            self._spawn(self._remove_later(livestream_id))

    async def _remove_later(self, livestream_id: str) -> None:
        await asyncio.sleep(self.hls_keep_seconds)
        await asyncio.to_thread(shutil.rmtree, self.hls_dir(livestream_id), True)

    # -- viewers ------------------------------------------------------------------------------------------
    def segment_seconds(self, livestream_id: str, name: str) -> float:
        """A served segment's duration, from the playlist (2 s, the segment length, if it is not listed)."""
        try:
            text = (self.hls_dir(livestream_id) / "index.m3u8").read_text()
        except OSError:
            return 2.0
        for duration, segment in _EXTINF.findall(text):
            if segment == name:
                return float(duration)
        return 2.0

    def served(self, livestream_id: str, seconds: float) -> None:
        """Count ``seconds`` of a segment served to a viewer (written to the session in batches)."""
        if self.engine.status(livestream_id) is None:
            return  # ended: its total was written at the end
        total = self._viewed.get(livestream_id, 0.0) + seconds
        if total >= _VIEWER_FLUSH_SECONDS:
            self._viewed[livestream_id] = 0.0
            self._spawn(self._flush_viewed(livestream_id, total))
        else:
            self._viewed[livestream_id] = total

    async def _flush_viewed(self, livestream_id: str, seconds: float) -> None:
        async with self.deps.sessions() as db:
            await q.add_viewer_seconds(db, livestream_id, seconds)
            await db.commit()

    # -- live_stream_on_start ------------------------------------------------------------------------------
    def _room_opened(self, live: LiveRoom) -> None:
        if not self._closing:
            self._spawn(self._on_start(live))

    async def _on_start(self, live: LiveRoom) -> None:
        async with self.deps.sessions() as db:
            meeting = await db.get(Meeting, live.meeting_id)
        if meeting is None or not meeting.live_stream_on_start:
            return
        video = (meeting.recording_config or {}).get("video_config") or {}
        try:
            await self.start(
                meeting,
                width=_int(video.get("width")),
                height=_int(video.get("height")),
                reason="LIVE_STREAM_ON_START",
            )
        except AlreadyStreaming:
            pass
        except (InvalidInput, Conflict, RoomtapeError) as exc:
            log.warning("live_stream_on_start of meeting %s failed: %s", meeting.id, exc)
            await self._failed_start(meeting, live, str(exc))
        except Exception:
            log.exception("live_stream_on_start of meeting %s failed", meeting.id)
            await self._failed_start(meeting, live, "the livestream could not start")

    async def _failed_start(self, meeting: Meeting, live: LiveRoom, reason: str) -> None:
        """An ERRORED livestream saying why ``live_stream_on_start`` could not start one, announced."""
        livestream_id = new_id()
        async with self.deps.sessions() as db:
            await self._insert(db, livestream_id, meeting, live, None, None, (0, 0), "LIVE_STREAM_ON_START")
            await q.set_status(db, livestream_id, "ERRORED", reason)
            await self._announce(db, livestream_id)
            await db.commit()
        self.events_committed()


def _meeting_rtmp_url(meeting: Meeting) -> str | None:
    config = (meeting.recording_config or {}).get("live_streaming_config") or {}
    url = config.get("rtmp_url") if isinstance(config, dict) else None
    return str(url) if url else None


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
