"""Fan-out of one tapped track to many consumers, and the track a subscriber's sender forwards.

One :class:`TrackFanout` reads a tapped remote track (the only reader of it) and pushes every
:class:`~roomtape.media.frame.EncodedFrame` into one bounded :class:`Subscription` per consumer: each
subscriber's :class:`ForwardTrack`, and later the recorder. Pushing never blocks and never grows memory
past the bound: a consumer that falls behind loses its backlog and then skips frames until the next
keyframe (an inter frame without its references would only show corruption), and a keyframe is requested
for it. The publisher and the other consumers are not affected.

A new video subscription also starts by waiting for a keyframe; the fan-out asks the publisher for one at
once and again every ``keyframe_retry`` seconds while anyone still waits (a PLI can be lost, and the
publisher-side rate limit can swallow a request whose keyframe already went by).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from typing import Any, Literal

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from roomtape.media.frame import EncodedFrame

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "ForwardTrack",
    "Subscription",
    "TrackFanout",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_FRAMES = 60
"""Frames a consumer may lag behind: 2 s of 30 fps video, 1.2 s of 20 ms Opus packets."""

MediaKind = Literal["audio", "video"]


class Subscription:
    """One consumer's bounded queue of encoded frames, dropping until a keyframe when it overflows.

    Made by :meth:`TrackFanout.subscribe`. Iterate it (``async for frame in subscription``) or call
    :meth:`get`; call :meth:`aclose` when done.

    Args:
        kind: ``"audio"`` or ``"video"``; audio frames are all keyframes, so audio never waits.
        max_frames: Maximum number of queued frames.
        on_keyframe_needed: Called when this subscription starts waiting for a keyframe.
        on_close: Called once when the subscription closes.
    """

    __slots__ = (
        "_closed",
        "_frames",
        "_max_frames",
        "_on_close",
        "_on_keyframe_needed",
        "_waiter",
        "dropped",
        "kind",
        "needs_keyframe",
    )

    def __init__(
        self,
        kind: MediaKind,
        *,
        max_frames: int = DEFAULT_MAX_FRAMES,
        on_keyframe_needed: Callable[[], object] | None = None,
        on_close: Callable[[Subscription], object] | None = None,
    ) -> None:
        if max_frames < 1:
            raise ValueError(f"max_frames must be >= 1, got {max_frames}")
        self.kind: MediaKind = kind
        self._max_frames = max_frames
        self._frames: deque[EncodedFrame] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._on_keyframe_needed = on_keyframe_needed
        self._on_close = on_close
        self.needs_keyframe = kind == "video"
        """True while frames are skipped until the next keyframe."""
        self.dropped = 0
        """Number of frames this consumer lost (backlog cleared or skipped waiting for a keyframe)."""

    @property
    def closed(self) -> bool:
        """True once the subscription or its source has ended."""
        return self._closed

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, frame: EncodedFrame) -> None:
        """Queue a frame; never blocks. Called by the fan-out for every frame of the source.

        Args:
            frame: The next frame of the source track.
        """
        if self._closed:
            return
        frames = self._frames
        if self.needs_keyframe:
            if not frame.keyframe:
                self.dropped += 1
                return
            self.needs_keyframe = False
        elif len(frames) >= self._max_frames:
            # Behind by max_frames: whatever is queued is too late to be worth sending.
            self.dropped += len(frames)
            frames.clear()
            if not frame.keyframe:
                self.dropped += 1
                self.needs_keyframe = True
                if self._on_keyframe_needed is not None:
                    self._on_keyframe_needed()
                return
        frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def take(self) -> list[EncodedFrame]:
        """Take every queued frame at once, without waiting (for consumers that poll on a timer).

        Returns:
            The queued frames, oldest first (empty if none).
        """
        frames = list(self._frames)
        self._frames.clear()
        return frames

    async def get(self) -> EncodedFrame:
        """Wait for the next frame.

        Returns:
            The next queued frame.

        Raises:
            MediaStreamError: once the subscription is closed and its queue is empty.
        """
        while not self._frames:
            if self._closed:
                raise MediaStreamError
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._frames.popleft()

    def close(self) -> None:
        """End the subscription: :meth:`get` raises once the queued frames are consumed. Idempotent."""
        if self._closed:
            return
        self._closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._on_close is not None:
            self._on_close(self)

    async def aclose(self) -> None:
        """Close the subscription and detach it from its fan-out."""
        self.close()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> EncodedFrame:
        try:
            return await self.get()
        except MediaStreamError:
            raise StopAsyncIteration from None


class TrackFanout:
    """Reads one tapped track and pushes each frame to every subscription.

    Args:
        source: A tapped remote track (its ``recv()`` yields :class:`EncodedFrame`).
        request_keyframe: Asks the publisher for a keyframe (rate-limited by the callee); may be None for
            audio.
        max_frames: Queue bound of each subscription.
        keyframe_retry: Seconds between repeated keyframe requests while a subscription waits for one.
    """

    def __init__(
        self,
        source: MediaStreamTrack,
        *,
        request_keyframe: Callable[[], object] | None = None,
        max_frames: int = DEFAULT_MAX_FRAMES,
        keyframe_retry: float = 0.35,
    ) -> None:
        self.kind: MediaKind = "video" if source.kind == "video" else "audio"
        self._source = source
        self._request_keyframe = request_keyframe
        self._max_frames = max_frames
        self._keyframe_retry = keyframe_retry
        self._subscriptions: tuple[Subscription, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._retry_handle: asyncio.TimerHandle | None = None
        self._ended = False
        self.frames = 0
        """Frames read from the source."""
        self.last_frame: EncodedFrame | None = None
        """The latest frame read, for codec and size look-ups."""
        self._limit: tuple[int, int] | None = None
        self._on_over_limit: Callable[[tuple[int, int]], object] | None = None
        self._over_limit = False
        self.over_limit_dropped = 0
        """Frames not passed on because the picture was larger than :meth:`limit_size` allows."""

    def limit_size(self, limit: tuple[int, int], on_over_limit: Callable[[tuple[int, int]], object]) -> None:
        """Pass on no picture larger than ``limit`` (a preset's maximum video resolution).

        The size is read from VP8 keyframe headers and H.264 sequence parameter sets
        (``EncodedFrame.width``/``height``), so nothing is decoded: from a keyframe that does not fit (in
        either orientation) up to the next one that does, frames are dropped for every consumer, and
        ``on_over_limit(size)`` is called once per such run.

        Args:
            limit: Largest ``(width, height)``.
            on_over_limit: Told the size that arrived.
        """
        self._limit = limit
        self._on_over_limit = on_over_limit

    def _too_large(self, frame: EncodedFrame) -> bool:
        limit = self._limit
        if limit is None:
            return False
        if frame.width is not None and frame.height is not None:  # a keyframe that states its size
            size = (frame.width, frame.height)
            over = max(size) > max(limit) or min(size) > min(limit)
            if over and not self._over_limit and self._on_over_limit is not None:
                self._on_over_limit(size)
            self._over_limit = over
        return self._over_limit

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The open subscriptions."""
        return self._subscriptions

    def start(self) -> None:
        """Start reading the source on the running event loop. Idempotent."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._pump(), name="roomtape-fanout")

    async def _pump(self) -> None:
        source = self._source
        try:
            while True:
                frame: EncodedFrame = await source.recv()  # type: ignore[assignment]  # a tapped track
                self.frames += 1
                if self._too_large(frame):
                    self.over_limit_dropped += 1
                    continue
                self.last_frame = frame
                for subscription in self._subscriptions:
                    subscription.push(frame)
        except MediaStreamError:
            pass
        finally:
            self._ended = True
            for subscription in self._subscriptions:
                subscription.close()

    def subscribe(self, *, max_frames: int | None = None) -> Subscription:
        """Add a consumer. A video consumer starts at the next keyframe, which is requested now.

        Args:
            max_frames: Queue bound for this consumer (default: the fan-out's).

        Returns:
            The new subscription (already closed if the source has ended).
        """
        subscription = Subscription(
            self.kind,
            max_frames=max_frames or self._max_frames,
            on_keyframe_needed=self.request_keyframe,
            on_close=self._detach,
        )
        if self._ended:
            subscription.close()
            return subscription
        self._subscriptions = (*self._subscriptions, subscription)
        if subscription.needs_keyframe:
            self.request_keyframe()
        return subscription

    def _detach(self, subscription: Subscription) -> None:
        self._subscriptions = tuple(s for s in self._subscriptions if s is not subscription)

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, and keep asking while a subscription waits for one."""
        if self.kind != "video" or self._request_keyframe is None:
            return
        self._request_keyframe()
        if self._retry_handle is None and not self._ended:
            self._retry_handle = asyncio.get_running_loop().call_later(self._keyframe_retry, self._retry_keyframe)

    def _retry_keyframe(self) -> None:
        self._retry_handle = None
        if any(s.needs_keyframe for s in self._subscriptions):
            self.request_keyframe()

    async def aclose(self) -> None:
        """Stop reading the source and close every subscription."""
        if self._retry_handle is not None:
            self._retry_handle.cancel()
            self._retry_handle = None
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ended = True
        for subscription in self._subscriptions:
            subscription.close()


class ForwardTrack(MediaStreamTrack):
    """A track for a subscriber's sender that yields the publisher's encoded frames unchanged.

    aiortc's sender packetizes an ``av.Packet`` without encoding it, converting its ``pts`` from its
    ``time_base`` to the RTP clock; each call returns a fresh packet so no consumer mutates another's.

    Args:
        subscription: The subscription to read (closed when the track stops).
    """

    def __init__(self, subscription: Subscription) -> None:
        super().__init__()
        self.kind = subscription.kind
        self._subscription = subscription

    @property
    def subscription(self) -> Subscription:
        """The subscription this track reads."""
        return self._subscription

    async def recv(self) -> av.Packet[Any]:
        """Return the next forwarded frame as an ``av.Packet``.

        Raises:
            MediaStreamError: when the track is stopped or the publisher's track has ended.
        """
        if self.readyState != "live":
            raise MediaStreamError
        try:
            frame = await self._subscription.get()
        except MediaStreamError:
            self.stop()
            raise
        return frame.to_packet()

    def stop(self) -> None:
        """Stop the track and close its subscription."""
        super().stop()
        self._subscription.close()
