"""The placement seam: which node holds a meeting's room, and where a new room goes.

:class:`Placement` is what the server asks; :class:`LocalPlacement` is the embedded backend (this process
holds every room) and :class:`~roomtape.cluster.registry.RedisPlacement` the scaled one.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import uuid
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from roomtape.config import Settings

__all__ = [
    "DeadNode",
    "LoadProbe",
    "LocalPlacement",
    "NodeInfo",
    "NodeLoad",
    "Placement",
    "make_placement",
    "new_node_id",
    "node_auth",
]

NODE_HEADER = "x-roomtape-node"
"""Header naming the node that forwarded a request."""
NODE_AUTH_HEADER = "x-roomtape-node-auth"
"""Header proving a request was forwarded by a node of this deployment (see :func:`node_auth`)."""


def new_node_id() -> str:
    """A fresh node id: one per process start, so a restarted node is a new node and its old self is dead."""
    return uuid.uuid4().hex[:16]


def node_auth(secret_key: str) -> str:
    """The shared secret nodes put on forwarded requests.

    Derived from the deployment's secret key (which every node has anyway, to verify join tokens), so there
    is nothing more to configure or leak.
    """
    return hmac.new(secret_key.encode(), b"roomtape-cluster-node", hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What a node reports in its heartbeat."""

    rooms: int
    """Live rooms in the process."""
    tracks: int
    """Published tracks in those rooms."""


LoadProbe = Callable[[], NodeLoad]


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """A registered node as the registry last saw it."""

    id: str
    """Node id (one per process start)."""
    url: str
    """Base URL other nodes forward to."""
    role: str
    """``all``, ``api`` or ``media``."""
    rooms: int
    """Rooms placed on it (counted at placement, before the room opens)."""
    tracks: int
    """Published tracks, from its last heartbeat."""
    cpu: float
    """Process CPU use (1.0 = one core) over its last heartbeat interval."""
    seen: float
    """Epoch seconds of its last heartbeat."""


@dataclass(frozen=True, slots=True)
class DeadNode:
    """A node whose heartbeat stopped, with the rooms it held."""

    id: str
    """Node id."""
    seen: float
    """Epoch seconds of its last heartbeat."""
    rooms: list[str]
    """Meeting ids placed on it."""


class Placement(Protocol):
    """Where rooms live. One per process; started and closed by the app's lifespan."""

    node_id: str
    """This process's node id (written on the recordings it starts)."""

    distributed: bool
    """Whether another process may hold a room (False: every room is here and nothing is forwarded)."""

    async def start(self, load: LoadProbe) -> None:
        """Register this node (if it holds rooms) and start heartbeating ``load()``."""
        ...

    async def aclose(self) -> None:
        """Stop heartbeating and deregister."""
        ...

    async def place(self, meeting_id: str, *, exclude: Collection[str] = ()) -> NodeInfo | None:
        """The node a participant of ``meeting_id`` must reach; None when it is this process.

        A new room goes to the least-loaded live node. ``exclude``: nodes found unreachable just now.

        Raises:
            Unavailable: no live node can hold rooms.
        """
        ...

    async def holder(self, meeting_id: str) -> NodeInfo | None:
        """The live node holding the meeting's room if it is another process, else None (here or nowhere)."""
        ...

    async def room_opened(self, meeting_id: str) -> None:
        """This process opened the meeting's room (claim it if nobody placed it)."""
        ...

    async def room_closed(self, meeting_id: str) -> None:
        """This process closed the meeting's room (release the mapping if it is ours)."""
        ...

    async def live_node_ids(self) -> list[str]:
        """Nodes with a fresh heartbeat (their recordings are theirs to finish)."""
        ...

    async def dead_nodes(self) -> list[DeadNode]:
        """Registered nodes whose heartbeat is older than the TTL."""
        ...

    async def forget(self, node_id: str) -> None:
        """Drop a dead node and its room mappings after its rooms and recordings were moved on."""
        ...

    def recovery_lock(self) -> contextlib.AbstractAsyncContextManager[bool]:
        """Held by one process of the deployment at a time while it recovers interrupted recordings.

        Yields whether this process got it.
        """
        ...


class LocalPlacement:
    """Embedded backend: this process holds every room; no other node exists."""

    distributed = False

    def __init__(self, node_id: str | None = None) -> None:
        self.node_id = node_id or new_node_id()

    async def start(self, load: LoadProbe) -> None:
        """Nothing to register."""

    async def aclose(self) -> None:
        """Nothing to deregister."""

    async def place(self, meeting_id: str, *, exclude: Collection[str] = ()) -> NodeInfo | None:
        """Always here."""
        return None

    async def holder(self, meeting_id: str) -> NodeInfo | None:
        """Always here (or nowhere)."""
        return None

    async def room_opened(self, meeting_id: str) -> None:
        """Nothing to claim."""

    async def room_closed(self, meeting_id: str) -> None:
        """Nothing to release."""

    async def live_node_ids(self) -> list[str]:
        """None but this process.

        It has recorded nothing yet when this is asked at start-up: every recording a previous process left
        running is recovered.
        """
        return []

    async def dead_nodes(self) -> list[DeadNode]:
        """A previous process's recordings are recovered at start-up; no node dies while this one runs."""
        return []

    async def forget(self, node_id: str) -> None:
        """Nothing registered."""

    @contextlib.asynccontextmanager
    async def recovery_lock(self) -> AsyncIterator[bool]:
        """One process: always held."""
        yield True


def make_placement(settings: Settings) -> Placement:
    """The backend ``settings`` configure: Redis with ``cluster_url``, in-process otherwise."""
    if settings.cluster_url:
        from roomtape.cluster.registry import RedisPlacement

        return RedisPlacement(settings)
    return LocalPlacement()
