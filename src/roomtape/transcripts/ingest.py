"""Taking transcript events into a session, and telling webhooks when a session's transcript is complete.

``meeting.transcript`` is queued when a session with a transcript ends (:func:`on_session_ended`, called by
the session lifecycle and by the LiveKit Agents upload), and queued again, with the next ``revision`` and
``updated: true``, when transcript items arrive after the end (REST ingest). While the session's audio is
still being transcribed live (segments open, queued or running), nothing is queued: the job that finishes
the last segment queues it (:mod:`roomtape.jobs.transcribe_live`), so the event carries the whole transcript.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, OutboxEvent, Session
from roomtape.db.transcript_segments import unfinished_count
from roomtape.transcripts.clock import ClockOffset
from roomtape.transcripts.events import ConversationItemAdded, UserInputTranscribed, to_item
from roomtape.transcripts.export import to_livekit
from roomtape.transcripts.links import TranscriptLinks
from roomtape.transcripts.model import Source, TranscriptItem
from roomtape.transcripts.store import add_items, list_session
from roomtape.webhooks.outbox import emit

TRANSCRIPT_EVENT = "meeting.transcript"
INLINE_ITEMS = 500
"""Items carried in the webhook itself; longer transcripts are fetched from the download URL."""


async def ingest(
    db: AsyncSession,
    session: Session,
    events: Sequence[ConversationItemAdded | UserInputTranscribed],
    *,
    offset: ClockOffset = ClockOffset(),
    source: Source = "api",
    now: float | None = None,
) -> list[TranscriptItem]:
    """Convert every event first (so a bad one stores nothing), then store them. The caller commits.

    Raises:
        InvalidInput: An event has no text or a span that ends before it starts.
    """
    now = now if now is not None else time.time()
    start = session.started_at.timestamp()
    items = [
        to_item(e, session_id=session.id, session_start_epoch=start, offset=offset, source=source, now=now)
        for e in events
    ]
    await add_items(db, session.app_id, items)
    return items


def _iso(epoch_dt: Any) -> str | None:
    return epoch_dt.isoformat().replace("+00:00", "Z") if epoch_dt is not None else None


def digest(items: Sequence[TranscriptItem]) -> str:
    """A fingerprint of a transcript's content: it changes when an item is added, replaced or retimed."""
    h = hashlib.sha256()
    for i in items:
        h.update(json.dumps([i.id, i.role, list(i.content), i.spoken_text, i.start_epoch, i.end_epoch]).encode())
    return h.hexdigest()[:32]


async def _sent(db: AsyncSession, session: Session) -> list[dict[str, Any]]:
    """Payloads of the ``meeting.transcript`` events already queued for the session, oldest first."""
    rows = await db.scalars(
        select(OutboxEvent.payload)
        .where(
            OutboxEvent.app_id == session.app_id,
            OutboxEvent.event == TRANSCRIPT_EVENT,
            OutboxEvent.created_at >= session.started_at,
        )
        .order_by(OutboxEvent.created_at)
    )
    return [p for p in rows if (p.get("meeting") or {}).get("sessionId") == session.id]


async def on_session_ended(
    db: AsyncSession,
    session_id: str,
    *,
    links: TranscriptLinks | None = None,
    link_ttl_secs: int = 24 * 3600,
) -> OutboxEvent | None:
    """Queue ``meeting.transcript`` for an ended session whose transcript is new or changed.

    Call it when the session ends, and again when items arrive after that (a late REST ingest): the first
    call with a transcript queues the event (``revision`` 1), a later one queues it again with the next
    ``revision`` only if the transcript changed since. Nothing is queued while the session is live, or
    without a transcript. The payload carries the meeting, the item count, up to :data:`INLINE_ITEMS` items
    in LiveKit's shape and, given ``links``, a download URL. The caller commits.
    """
    session = await db.get(Session, session_id)
    if session is None or session.status != "ENDED":
        return None
    if await unfinished_count(db, session_id):
        # Still being transcribed live: the job of the last segment calls this again (jobs.transcribe_live).
        return None
    items = await list_session(db, session_id)
    if not items:
        return None
    fingerprint = digest(items)
    sent = await _sent(db, session)
    if any(p.get("digest") == fingerprint for p in sent):
        return None
    meeting = await db.get(Meeting, session.meeting_id)
    payload: dict[str, Any] = {
        "event": TRANSCRIPT_EVENT,
        "meeting": {
            "id": session.meeting_id,
            "sessionId": session.id,
            "title": meeting.title if meeting else None,
            "status": session.status,
            "startedAt": _iso(session.started_at),
            "endedAt": _iso(session.ended_at),
            "organizedBy": {"id": session.app_id},
        },
        "revision": len(sent) + 1,
        "updated": bool(sent),
        "digest": fingerprint,
        "itemCount": len(items),
        "transcript": to_livekit(items[:INLINE_ITEMS]),
        "truncated": len(items) > INLINE_ITEMS,
    }
    if links is not None:
        url, expiry = links.sign("sessions", session.id, "json", link_ttl_secs)
        payload["transcriptDownloadUrl"] = url
        payload["transcriptDownloadUrlExpiry"] = _iso(expiry)
    return emit(db, session.app_id, TRANSCRIPT_EVENT, payload)
