"""The scaled placement backend: nodes, heartbeats and room → node mappings in Redis.

Keys (``{p}`` = ``settings.cluster_prefix``):

- ``{p}:nodes``: sorted set, node id → epoch seconds of its last heartbeat. Live means newer than
  ``node_ttl_secs``; a dead node stays here until the reaper has moved its rooms and recordings on.
- ``{p}:node:{id}``: hash ``url``, ``role``, ``tracks``, ``cpu`` (its last heartbeat's report).
- ``{p}:node:{id}:rooms``: sorted set, meeting id → epoch seconds it was placed there (the ``rooms`` load,
  counted at placement so a burst of new rooms spreads before any heartbeat reports them).
- ``{p}:room:{meeting_id}``: the node holding the meeting's room while it is live.
- ``{p}:lock:recovery``: held while a process recovers interrupted recordings.

Placement is compare-and-set in Lua, so two api nodes placing the same new room at once agree on one node.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING, Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from roomtape.cluster.placement import DeadNode, LoadProbe, NodeInfo, NodeLoad, new_node_id
from roomtape.errors import Unavailable

if TYPE_CHECKING:
    from roomtape.config import Settings

__all__ = ["RedisPlacement"]

log = logging.getLogger(__name__)

UNCLAIMED_GRACE_SECS: Final = 30.0
"""A room placed on a node that never opened it (the participant gave up before connecting) is dropped
from the node's load after this long."""

# Move the room from the node it was placed on (ARGV[1], '' = none) to ARGV[2], unless another caller did
# first; answers the node that holds it afterwards.
_MOVE: Final = """
local current = redis.call('GET', KEYS[1]) or ''
if current ~= ARGV[1] then return current end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
if ARGV[1] ~= '' then redis.call('ZREM', KEYS[3], ARGV[4]) end
return ARGV[2]
"""

# Release the room if this node (ARGV[1]) holds it.
_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""

_UNLOCK: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class _CpuMeter:
    """Process CPU time per wall-clock second since the previous reading (1.0 = one busy core)."""

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def read(self) -> float:
        wall, cpu = time.monotonic(), time.process_time()
        used = (cpu - self._cpu) / max(wall - self._wall, 1e-3)
        self._wall, self._cpu = wall, cpu
        return round(used, 3)


class RedisPlacement:
    """Node registry and room placement in Redis (``settings.cluster_url``).

    Args:
        settings: ``cluster_url``, ``cluster_prefix``, ``node_ttl_secs``, ``role`` and the node's URL.
        node_id: This node's id (default: a fresh one).
    """

    distributed = True

    def __init__(self, settings: Settings, node_id: str | None = None) -> None:
        self.node_id = node_id or new_node_id()
        self.role = settings.role
        self.url = settings.resolved_node_url
        self.ttl = settings.node_ttl_secs
        self._p = settings.cluster_prefix
        self._redis: aioredis.Redis = aioredis.from_url(settings.cluster_url, decode_responses=True)
        self._beat: asyncio.Task[None] | None = None
        self._load: LoadProbe = lambda: NodeLoad(0, 0)
        self._cpu = _CpuMeter()
        self._move = self._redis.register_script(_MOVE)
        self._release = self._redis.register_script(_RELEASE)
        self._unlock = self._redis.register_script(_UNLOCK)

    # -- keys -------------------------------------------------------------------------------------------
    @property
    def _nodes(self) -> str:
        return f"{self._p}:nodes"

    def _node(self, node_id: str) -> str:
        return f"{self._p}:node:{node_id}"

    def _rooms(self, node_id: str) -> str:
        return f"{self._p}:node:{node_id}:rooms"

    def _room(self, meeting_id: str) -> str:
        return f"{self._p}:room:{meeting_id}"

    # -- lifecycle --------------------------------------------------------------------------------------
    @property
    def holds_rooms(self) -> bool:
        """Whether this node is a candidate for rooms (``all`` and ``media``)."""
        return self.role != "api"

    async def start(self, load: LoadProbe) -> None:
        """Register (first heartbeat now, so the node is live before it serves) and keep heartbeating.

        Raises:
            Unavailable: Redis is unreachable.
        """
        self._load = load
        try:
            await self.heartbeat()
        except RedisError as exc:
            raise Unavailable(f"cluster registry at {self._safe_url()} is unreachable: {exc}") from exc
        self._beat = asyncio.create_task(self._heartbeats(), name="roomtape-node-heartbeat")
        log.info("node %s (%s) registered at %s", self.node_id, self.role, self.url)

    async def aclose(self) -> None:
        """Stop heartbeating and deregister; the rooms still mapped here are released."""
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        with contextlib.suppress(RedisError):
            for meeting_id in await self._members(self._rooms(self.node_id)):
                await self._release(
                    keys=[self._room(meeting_id), self._rooms(self.node_id)], args=[self.node_id, meeting_id]
                )
            # Dead at once rather than gone: a reaper moves on whatever this process left running, then forgets it.
            await self._redis.zadd(self._nodes, {self.node_id: 0})
        await self._redis.aclose()

    async def heartbeat(self) -> None:
        """Report this node's load and mark it live; drop rooms placed here that never opened."""
        load = self._load()
        now = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self._node(self.node_id),
                mapping={
                    "url": self.url,
                    "role": self.role,
                    "tracks": load.tracks,
                    "cpu": self._cpu.read(),
                    "pid": os.getpid(),
                },
            )
            pipe.zadd(self._nodes, {self.node_id: now})
            await pipe.execute()
        if load.rooms == 0 and self.holds_rooms:
            # Nothing is open here: whatever is placed here and older than the grace never arrived.
            stale = await self._redis.zrangebyscore(self._rooms(self.node_id), "-inf", now - UNCLAIMED_GRACE_SECS)
            for meeting_id in map(_text, stale):
                await self.room_closed(meeting_id)

    async def _heartbeats(self) -> None:
        interval = self.ttl / 4
        while True:
            await asyncio.sleep(interval)
            try:
                await self.heartbeat()
            except Exception:  # Redis away for a moment: the next beat tries again (the TTL allows 3 misses)
                log.exception("node %s: heartbeat failed", self.node_id)

    # -- nodes ------------------------------------------------------------------------------------------
    async def _scores(self) -> list[tuple[str, float]]:
        pairs: list[Any] = await self._redis.zrange(self._nodes, 0, -1, withscores=True)
        return [(_text(pair[0]), float(pair[1])) for pair in pairs]

    async def _members(self, key: str) -> list[str]:
        return [_text(m) for m in await self._redis.zrange(key, 0, -1)]

    async def _get(self, key: str) -> str:
        value = await self._redis.get(key)
        return _text(value) if value is not None else ""

    async def live_node_ids(self) -> list[str]:
        """Nodes whose last heartbeat is within the TTL."""
        cutoff = time.time() - self.ttl
        return [n for n, seen in await self._scores() if seen >= cutoff]

    async def nodes(self) -> list[NodeInfo]:
        """Every live node with its load."""
        return await self._live_nodes(await self._scores())

    async def _live_nodes(self, scores: list[tuple[str, float]]) -> list[NodeInfo]:
        """The nodes of ``scores`` (id, last heartbeat) that are live, with their load: one round trip."""
        cutoff = time.time() - self.ttl
        live = [(node_id, seen) for node_id, seen in scores if seen >= cutoff]
        if not live:
            return []
        async with self._redis.pipeline(transaction=False) as pipe:
            for node_id, _ in live:
                pipe.hgetall(self._node(node_id))
                pipe.zcard(self._rooms(node_id))
            replies: list[Any] = await pipe.execute()
        out: list[NodeInfo] = []
        for (node_id, seen), fields, rooms in zip(live, replies[::2], replies[1::2], strict=True):
            info = self._node_info(node_id, seen, fields, rooms)
            if info is not None:
                out.append(info)
        return out

    async def _info(self, node_id: str) -> NodeInfo | None:
        """One registered node as last seen (live or not): one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._node(node_id))
            pipe.zscore(self._nodes, node_id)
            pipe.zcard(self._rooms(node_id))
            fields, score, rooms = await pipe.execute()
        return self._node_info(node_id, float(score) if score is not None else 0.0, fields, rooms)

    @staticmethod
    def _node_info(node_id: str, seen: float, raw: dict[Any, Any], rooms: int) -> NodeInfo | None:
        fields = {_text(k): _text(v) for k, v in raw.items()}
        if not fields:
            return None
        return NodeInfo(
            id=node_id,
            url=str(fields.get("url", "")),
            role=str(fields.get("role", "media")),
            rooms=int(rooms),
            tracks=int(fields.get("tracks", 0)),
            cpu=float(fields.get("cpu", 0.0)),
            seen=seen,
        )

    def _live(self, info: NodeInfo | None) -> bool:
        return info is not None and info.seen >= time.time() - self.ttl

    async def dead_nodes(self) -> list[DeadNode]:
        """Registered nodes whose heartbeat is older than the TTL, with the rooms placed on them."""
        cutoff = time.time() - self.ttl
        dead: list[DeadNode] = []
        for node_id, seen in await self._scores():
            if seen < cutoff:
                rooms = await self._members(self._rooms(node_id))
                dead.append(DeadNode(id=node_id, seen=seen, rooms=rooms))
        return dead

    async def forget(self, node_id: str) -> None:
        """Drop a dead node: its mappings (where still its own), its load and its registration."""
        for meeting_id in await self._members(self._rooms(node_id)):
            await self._release(keys=[self._room(meeting_id), self._rooms(node_id)], args=[node_id, meeting_id])
        await self._redis.delete(self._node(node_id), self._rooms(node_id))
        await self._redis.zrem(self._nodes, node_id)

    # -- rooms ------------------------------------------------------------------------------------------
    async def place(self, meeting_id: str, *, exclude: Collection[str] = ()) -> NodeInfo | None:
        """The node holding the room, placing it on the least-loaded live node if nobody (alive) holds it.

        Least loaded: fewest rooms, then fewest tracks, then least CPU. Returns None when it is this node.

        Raises:
            Unavailable: no live node takes rooms, or Redis is unreachable.
        """
        try:
            for _ in range(5):  # each round either returns or lost a race to another placer
                # The room's holder and every node's heartbeat in one round trip, their loads in a second.
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.get(self._room(meeting_id))
                    pipe.zrange(self._nodes, 0, -1, withscores=True)
                    held, pairs = await pipe.execute()
                current = _text(held) if held is not None else ""
                nodes = await self._live_nodes([(_text(p[0]), float(p[1])) for p in pairs])
                if current and current not in exclude:
                    holder = next((n for n in nodes if n.id == current), None)
                    if holder is not None:
                        return None if current == self.node_id else holder
                candidates = [n for n in nodes if n.role != "api" and n.id not in exclude]
                if not candidates:
                    raise Unavailable("no live media node can take the room")
                chosen = min(candidates, key=lambda n: (n.rooms, n.tracks, n.cpu, n.id))
                keys = [self._room(meeting_id), self._rooms(chosen.id), self._rooms(current or "-")]
                winner = await self._move(keys=keys, args=[current, chosen.id, time.time(), meeting_id])
                if winner == chosen.id:
                    if current:
                        log.warning("meeting %s: moved from node %s to %s", meeting_id, current, chosen.id)
                    return None if chosen.id == self.node_id else chosen
        except RedisError as exc:
            raise Unavailable(f"cluster registry is unreachable: {exc}") from exc
        raise Unavailable(f"meeting {meeting_id}: placement kept racing; try again")

    async def holder(self, meeting_id: str) -> NodeInfo | None:
        """The live other node holding the room, or None (here, or nowhere live)."""
        try:
            current = await self._get(self._room(meeting_id))
            if not current or current == self.node_id:
                return None
            info = await self._info(current)
        except RedisError as exc:
            raise Unavailable(f"cluster registry is unreachable: {exc}") from exc
        return info if self._live(info) else None

    async def room_opened(self, meeting_id: str) -> None:
        """Claim the room for this node unless a live node already holds it."""
        current = await self._get(self._room(meeting_id))
        if current == self.node_id:
            return
        if current and self._live(await self._info(current)):
            # A participant connected here directly, not through the entry: the room is split.
            log.warning("meeting %s opened here but node %s holds it", meeting_id, current)
            return
        await self._move(
            keys=[self._room(meeting_id), self._rooms(self.node_id), self._rooms(current or "-")],
            args=[current, self.node_id, time.time(), meeting_id],
        )

    async def room_closed(self, meeting_id: str) -> None:
        """Release the room if this node holds it."""
        await self._release(keys=[self._room(meeting_id), self._rooms(self.node_id)], args=[self.node_id, meeting_id])

    @contextlib.asynccontextmanager
    async def recovery_lock(self) -> AsyncIterator[bool]:
        """A Redis lock (SET NX with an expiry of a few TTLs, released by its owner only)."""
        key, token = f"{self._p}:lock:recovery", uuid.uuid4().hex
        try:
            held = bool(await self._redis.set(key, token, nx=True, px=int(self.ttl * 5000)))
        except RedisError:
            log.exception("recovery lock: Redis unreachable")
            held = False
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(RedisError):
                    await self._unlock(keys=[key], args=[token])

    def _safe_url(self) -> str:
        kwargs = self._redis.connection_pool.connection_kwargs
        return f"redis://{kwargs.get('host')}:{kwargs.get('port')}/{kwargs.get('db', 0)}"
