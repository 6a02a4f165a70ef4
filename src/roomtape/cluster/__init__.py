"""Scale-out: which node holds which room, and how a request reaches it.

One ``roomtape serve`` process has a role (``settings.role``): ``all`` holds rooms and serves the API,
``api`` serves the API and the signaling entry, ``media`` holds rooms. What each role runs:

- every role: the HTTP API and dashboard (:mod:`roomtape.api`), the job runner (:mod:`roomtape.jobs`), the
  :class:`~roomtape.cluster.placement.Placement` backend and the :class:`~roomtape.cluster.reaper.Reaper`;
- nodes that hold rooms (``all``, ``media``): the media plane, presence and the recording engine
  (:mod:`roomtape.media`, :mod:`roomtape.recording`), registered in the registry with their load;
- the entry (any role): :class:`~roomtape.cluster.proxy.NodeForwarder` forwards signaling (WebSocket, WHIP)
  and room control (recording start/stop, kicks, polls) to the node holding the room.

The backend is chosen from configuration alone (:func:`make_placement`): without ``cluster_url`` the
in-process :class:`~roomtape.cluster.placement.LocalPlacement` says every room is here, so the forwarder
passes every request through; with it, :class:`~roomtape.cluster.registry.RedisPlacement` keeps nodes,
their heartbeats and the room → node mapping in Redis.
"""

from __future__ import annotations

from roomtape.cluster.placement import LocalPlacement, NodeInfo, Placement, make_placement

__all__ = ["LocalPlacement", "NodeInfo", "Placement", "make_placement"]
