"""Stored chat messages (``persist_chat``): write one as it is sent, read a session's in order."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import ChatMessage as ChatRow
from roomtape.db.models import Meeting
from roomtape.media.chat import ChatMessage

__all__ = ["CHAT_CSV_COLUMNS", "chat_csv", "list_session_chat", "persists_chat", "store_chat_message"]

CHAT_CSV_COLUMNS = ("id", "participantId", "displayName", "sessionId", "payloadType", "payload", "createdAt")
"""Columns of the chat export (RealtimeKit's chat dump is CSV; ``payloadType`` is always ``text`` here)."""


async def persists_chat(db: AsyncSession, meeting_id: str) -> bool:
    """Whether the meeting keeps its chat (read per message: the setting may change during a session)."""
    return bool(await db.scalar(select(Meeting.persist_chat).where(Meeting.id == meeting_id)))


def store_chat_message(db: AsyncSession, *, app_id: str, session_id: str, message: ChatMessage) -> ChatRow:
    """Add the message to the session's chat; the caller commits."""
    row = ChatRow(
        id=message.id,
        app_id=app_id,
        session_id=session_id,
        participant_id=message.participant_id,
        name=message.name,
        text=message.text,
        sent_at=datetime.fromtimestamp(message.time, UTC),
    )
    db.add(row)
    return row


async def list_session_chat(db: AsyncSession, session_id: str) -> list[ChatRow]:
    """The session's stored messages, oldest first."""
    rows = await db.scalars(
        select(ChatRow).where(ChatRow.session_id == session_id).order_by(ChatRow.sent_at, ChatRow.id)
    )
    return list(rows)


def chat_csv(rows: Sequence[ChatRow]) -> bytes:
    """The chat export: a header row, then one row per message, oldest first; UTF-8, RFC 4180 quoting.

    ``payload`` is the text as written: a CSV cell holds it verbatim, markup included (readers must not
    render it as HTML).
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CHAT_CSV_COLUMNS)
    for row in rows:
        created = row.sent_at.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        writer.writerow((row.id, row.participant_id, row.name or "", row.session_id, "text", row.text, created))
    return out.getvalue().encode("utf-8")
