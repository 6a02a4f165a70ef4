"""The Redis placement backend against a real Redis: least-loaded placement, races, death, hand-over."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from tests.integration.cluster.deployment import REDIS_URL

from roomtape.cluster.placement import NodeLoad
from roomtape.cluster.registry import RedisPlacement
from roomtape.config import Settings
from roomtape.errors import Unavailable


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    value = f"roomtape-test:{uuid.uuid4().hex[:10]}"
    yield value
    r = redis.Redis.from_url(REDIS_URL)
    keys = list(r.scan_iter(f"{value}*"))
    if keys:
        r.delete(*keys)


def _node(prefix: str, role: str, port: int, ttl: float = 6.0) -> RedisPlacement:
    settings = Settings(
        cluster_url=REDIS_URL, cluster_prefix=prefix, role=role, node_url=f"http://n{port}", node_ttl_secs=ttl
    )
    return RedisPlacement(settings)


async def test_new_rooms_go_to_the_least_loaded_media_node(prefix: str) -> None:
    api, a, b = _node(prefix, "api", 1), _node(prefix, "media", 2), _node(prefix, "media", 3)
    await api.start(lambda: NodeLoad(0, 0))
    await a.start(lambda: NodeLoad(0, 0))
    await b.start(lambda: NodeLoad(0, 6))  # b reports tracks: a wins ties on rooms
    try:
        first = await api.place("m1")
        assert first is not None and first.id == a.node_id
        second = await api.place("m2")  # a has one room now: b, though it has more tracks
        assert second is not None and second.id == b.node_id
        third = await api.place("m3")
        assert third is not None and third.id == a.node_id
        again = await api.place("m1")  # placed rooms stay where they are
        assert again is not None and again.id == a.node_id
        holder = await api.holder("m2")
        assert holder is not None and holder.id == b.node_id
        assert await b.holder("m2") is None  # b holds it: "here"
        assert await b.place("m2") is None
        assert await api.holder("unknown") is None
        # Nothing lands on an api node, and a room whose node was unreachable goes elsewhere.
        moved = await api.place("m1", exclude=[a.node_id])
        assert moved is not None and moved.id == b.node_id
        with pytest.raises(Unavailable, match="no live media node"):
            await api.place("m4", exclude=[a.node_id, b.node_id])  # never on the api node itself
    finally:
        for node in (api, a, b):
            await node.aclose()


async def test_concurrent_placements_of_one_room_agree(prefix: str) -> None:
    a, b = _node(prefix, "media", 2), _node(prefix, "media", 3)
    entries = [_node(prefix, "api", 10 + i) for i in range(6)]
    for node in (a, b, *entries):
        await node.start(lambda: NodeLoad(0, 0))
    try:
        answers = await asyncio.gather(*(e.place("same-room") for e in entries))
        assert len({x.id for x in answers if x is not None}) == 1
        r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        counted = r.zcard(f"{prefix}:node:{a.node_id}:rooms") + r.zcard(f"{prefix}:node:{b.node_id}:rooms")
        assert counted == 1  # one room, counted on one node
    finally:
        for node in (a, b, *entries):
            await node.aclose()


async def test_a_node_whose_heartbeat_stops_is_dead_with_its_rooms(prefix: str) -> None:
    api, a, b = _node(prefix, "api", 1, ttl=1.0), _node(prefix, "media", 2, ttl=1.0), _node(prefix, "media", 3, ttl=1.0)
    for node in (api, a, b):
        await node.start(lambda: NodeLoad(0, 0))
    try:
        placed = await api.place("m1")
        assert placed is not None
        dying, other = (a, b) if placed.id == a.node_id else (b, a)
        assert dying._beat is not None
        dying._beat.cancel()  # as if SIGKILLed: no more heartbeats
        deadline = time.monotonic() + 5
        while not await api.dead_nodes():
            assert time.monotonic() < deadline, "never declared dead"
            await asyncio.sleep(0.1)
        (dead,) = await api.dead_nodes()
        assert dead.id == dying.node_id and dead.rooms == ["m1"]
        assert await api.holder("m1") is None  # a dead holder holds nothing
        assert dying.node_id not in await api.live_node_ids()
        rejoin = await api.place("m1")  # a reconnect lands on the live node
        assert rejoin is not None and rejoin.id == other.node_id
        await api.forget(dying.node_id)
        assert await api.dead_nodes() == []
        holder = await api.holder("m1")
        assert holder is not None and holder.id == other.node_id  # forgetting did not drop the moved room
    finally:
        for node in (api, a, b):
            await node.aclose()


async def test_rooms_opened_and_closed_on_a_node_claim_and_release(prefix: str) -> None:
    a = _node(prefix, "media", 2)
    await a.start(lambda: NodeLoad(0, 0))
    try:
        await a.room_opened("direct")  # a participant reached the node directly
        r = redis.Redis.from_url(REDIS_URL, decode_responses=True)
        assert r.get(f"{prefix}:room:direct") == a.node_id
        await a.room_closed("direct")
        assert r.get(f"{prefix}:room:direct") is None
        assert r.zcard(f"{prefix}:node:{a.node_id}:rooms") == 0
        async with a.recovery_lock() as held, a.recovery_lock() as again:
            assert held and not again  # one process at a time
    finally:
        await a.aclose()
    # A node that stops gracefully is dead at once (so a reaper moves on what it left), not silently gone.
    checker = _node(prefix, "api", 9)
    await checker.start(lambda: NodeLoad(0, 0))
    try:
        assert [d.id for d in await checker.dead_nodes()] == [a.node_id]
    finally:
        await checker.aclose()
