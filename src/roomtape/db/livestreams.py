"""The queries behind the RealtimeKit livestreams API: livestreams, their sessions, their analytics.

A livestream row is written when a start call is accepted (INVOKED), with one session row (its run); the
engine's status callbacks move both on (``roomtape.livestream.service``). Reads only need the database, so
an ``api`` node answers them; starting and stopping run on the node holding the room.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Livestream, LivestreamSession, utcnow

__all__ = [
    "RUNNING",
    "LivestreamFilter",
    "LivestreamTotals",
    "add_viewer_seconds",
    "app_livestream",
    "app_livestream_session",
    "create_livestream",
    "daywise_totals",
    "delete_livestream",
    "end_orphans",
    "list_livestreams",
    "running_livestream",
    "session_of",
    "set_status",
    "totals",
]

RUNNING: tuple[str, ...] = ("INVOKED", "LIVE")
"""Statuses of a livestream that is streaming (or about to)."""


@dataclass(frozen=True, slots=True)
class LivestreamFilter:
    """Which of an app's livestreams a list shows; fields left at None filter nothing."""

    app_id: str
    statuses: Collection[str] | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


async def create_livestream(
    db: AsyncSession,
    *,
    livestream_id: str,
    app_id: str,
    meeting_id: str,
    session_id: str | None,
    name: str | None,
    rtmp_url_sealed: str | None,
    ingest_server: str | None,
    width: int,
    height: int,
    start_reason: str,
    node_id: str,
) -> tuple[Livestream, LivestreamSession]:
    """Add an INVOKED livestream and its session (not committed)."""
    row = Livestream(
        id=livestream_id,
        app_id=app_id,
        meeting_id=meeting_id,
        session_id=session_id,
        name=name,
        status="INVOKED",
        rtmp_url=rtmp_url_sealed,
        ingest_server=ingest_server,
        width=width,
        height=height,
        start_reason=start_reason,
        node_id=node_id,
    )
    run = LivestreamSession(livestream_id=livestream_id, app_id=app_id)
    db.add(row)
    await db.flush()
    db.add(run)
    await db.flush()
    return row, run


async def delete_livestream(db: AsyncSession, livestream_id: str) -> None:
    """Remove a livestream whose start failed (its session goes with it; not committed)."""
    await db.execute(delete(LivestreamSession).where(LivestreamSession.livestream_id == livestream_id))
    await db.execute(delete(Livestream).where(Livestream.id == livestream_id))


async def session_of(db: AsyncSession, livestream_id: str) -> LivestreamSession | None:
    """The livestream's (latest) session."""
    return await db.scalar(
        select(LivestreamSession)
        .where(LivestreamSession.livestream_id == livestream_id)
        .order_by(LivestreamSession.invoked_time.desc())
        .limit(1)
    )


async def set_status(
    db: AsyncSession, livestream_id: str, status: str, reason: str | None
) -> tuple[Livestream, LivestreamSession | None] | None:
    """Move a livestream (and its session) to ``status``: LIVE sets ``started_time``, IDLE/ERRORED stop it.

    Returns the rows (changed, not committed), or None if the livestream is gone.
    """
    row = await db.get(Livestream, livestream_id)
    if row is None:
        return None
    run = await session_of(db, livestream_id)
    now = utcnow()
    row.status = status
    if run is not None:
        if status == "LIVE" and run.started_time is None:
            run.started_time = now
        elif status in ("IDLE", "ERRORED") and run.stopped_time is None:
            run.stopped_time = now
            if run.started_time is not None:
                run.ingest_seconds = round(max(0.0, (now - run.started_time).total_seconds()), 3)
        if status == "ERRORED":
            run.err_message = reason or "the livestream failed"
    return row, run


async def add_viewer_seconds(db: AsyncSession, livestream_id: str, seconds: float) -> None:
    """Count media seconds served to viewers (not committed)."""
    await db.execute(
        update(LivestreamSession)
        .where(LivestreamSession.livestream_id == livestream_id)
        .values(viewer_seconds=LivestreamSession.viewer_seconds + seconds)
    )


async def app_livestream(db: AsyncSession, app_id: str, livestream_id: str) -> Livestream | None:
    """The app's livestream ``livestream_id``."""
    return await db.scalar(select(Livestream).where(Livestream.id == livestream_id, Livestream.app_id == app_id))


async def app_livestream_session(db: AsyncSession, app_id: str, session_id: str) -> LivestreamSession | None:
    """The app's livestream session ``session_id``."""
    return await db.scalar(
        select(LivestreamSession).where(LivestreamSession.id == session_id, LivestreamSession.app_id == app_id)
    )


async def running_livestream(db: AsyncSession, meeting_id: str) -> Livestream | None:
    """The meeting's newest INVOKED or LIVE livestream."""
    return await db.scalar(
        select(Livestream)
        .where(Livestream.meeting_id == meeting_id, Livestream.status.in_(RUNNING))
        .order_by(Livestream.created_at.desc())
        .limit(1)
    )


async def list_livestreams(
    db: AsyncSession, where: LivestreamFilter, *, ascending: bool, offset: int, limit: int
) -> tuple[list[Livestream], int]:
    """One page of the livestreams ``where`` selects, by creation time, and the total count."""
    conditions = [Livestream.app_id == where.app_id]
    if where.statuses is not None:
        conditions.append(Livestream.status.in_(where.statuses))
    if where.created_from is not None:
        conditions.append(Livestream.created_at >= where.created_from)
    if where.created_to is not None:
        conditions.append(Livestream.created_at <= where.created_to)
    total = int(await db.scalar(select(func.count()).select_from(Livestream).where(*conditions)) or 0)
    order = Livestream.created_at.asc() if ascending else Livestream.created_at.desc()
    rows = await db.scalars(
        select(Livestream).where(*conditions).order_by(order, Livestream.id).offset(offset).limit(limit)
    )
    return list(rows.all()), total


@dataclass
class LivestreamTotals:
    """Livestream sessions and their ingest and viewer seconds."""

    count: int = 0
    ingest_seconds: float = 0.0
    viewer_seconds: float = 0.0


async def _sessions_between(
    db: AsyncSession, app_id: str, start: datetime | None, end: datetime | None
) -> list[LivestreamSession]:
    conditions = [LivestreamSession.app_id == app_id]
    if start is not None:
        conditions.append(LivestreamSession.invoked_time >= start)
    if end is not None:
        conditions.append(LivestreamSession.invoked_time <= end)
    return list((await db.scalars(select(LivestreamSession).where(*conditions))).all())


def _ingest(run: LivestreamSession, now: datetime) -> float:
    """A session's ingest seconds, counting a running one up to now."""
    if run.stopped_time is None and run.started_time is not None:
        return max(0.0, (now - run.started_time).total_seconds())
    return run.ingest_seconds


async def totals(db: AsyncSession, app_id: str, start: datetime | None, end: datetime | None) -> LivestreamTotals:
    """The app's livestream sessions invoked between ``start`` and ``end`` (both included; None: open)."""
    now = utcnow()
    out = LivestreamTotals()
    for run in await _sessions_between(db, app_id, start, end):
        out.count += 1
        out.ingest_seconds += _ingest(run, now)
        out.viewer_seconds += run.viewer_seconds
    return out


async def daywise_totals(
    db: AsyncSession, app_id: str, start: datetime | None, end: datetime | None
) -> dict[date, LivestreamTotals]:
    """:func:`totals` per UTC day of invocation, days with a session only, in order."""
    now = utcnow()
    days: defaultdict[date, LivestreamTotals] = defaultdict(LivestreamTotals)
    for run in await _sessions_between(db, app_id, start, end):
        day = days[run.invoked_time.astimezone(UTC).date()]
        day.count += 1
        day.ingest_seconds += _ingest(run, now)
        day.viewer_seconds += run.viewer_seconds
    return dict(sorted(days.items()))


async def end_orphans(db: AsyncSession, live_nodes: Collection[str]) -> list[str]:
    """ERRORED for every running livestream whose node is not among ``live_nodes`` (it stopped or crashed).

    Returns their ids (rows changed, not committed).
    """
    rows = (
        await db.scalars(
            select(Livestream).where(
                Livestream.status.in_(RUNNING), Livestream.node_id.is_(None) | Livestream.node_id.not_in(live_nodes)
            )
        )
    ).all()
    for row in rows:
        await set_status(db, row.id, "ERRORED", "the node streaming it stopped")
    return [row.id for row in rows]
