"""Session lifecycle: joins and leaves reported by the media plane become session rows and events.

The media plane reports joins and leaves here; this keeps the session rows and emits ``meeting.*`` events
to the webhook outbox.

A session starts with the first join of a meeting and ends when the last participant has left and the
meeting's keep-alive has passed (the media plane schedules :func:`end_session_if_idle` for that moment).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from roomtape.db.models import Meeting, Participant, Session, SessionParticipant, SessionSummary, utcnow
from roomtape.domain.enums import MeetingStatus, SessionStatus
from roomtape.errors import Conflict, NotFound
from roomtape.webhooks.outbox import emit

if TYPE_CHECKING:
    from roomtape.transcripts.links import TranscriptLinks


async def live_session(db: AsyncSession, meeting_id: str) -> Session | None:
    """The meeting's LIVE session, if any."""
    result = await db.scalars(
        select(Session)
        .where(Session.meeting_id == meeting_id, Session.status == SessionStatus.LIVE)
        .order_by(Session.started_at.desc())
        .limit(1)
    )
    return result.first()


def _iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


async def participant_joined(
    db: AsyncSession, meeting: Meeting, participant: Participant, now: datetime | None = None
) -> tuple[Session, SessionParticipant]:
    """Record a join, starting a session if none is live. The caller commits.

    Raises:
        Conflict: the meeting is INACTIVE.
    """
    if meeting.status != MeetingStatus.ACTIVE:
        raise Conflict("meeting is INACTIVE and refuses joins")
    now = now or utcnow()
    session = await live_session(db, meeting.id)
    if session is None:
        session = Session(app_id=meeting.app_id, meeting_id=meeting.id, started_at=now, created_at=now)
        db.add(session)
        await db.flush()
        emit(
            db,
            meeting.app_id,
            "meeting.started",
            {
                "event": "meeting.started",
                "meeting": _meeting_payload(meeting, session),
            },
        )
    stay = SessionParticipant(
        session_id=session.id,
        participant_id=participant.id,
        custom_participant_id=participant.custom_participant_id,
        display_name=participant.name,
        preset_name=participant.preset_name,
        joined_at=now,
    )
    db.add(stay)
    session.live_participants += 1
    session.max_concurrent_participants = max(session.max_concurrent_participants, session.live_participants)
    await db.flush()
    emit(
        db,
        meeting.app_id,
        "meeting.participantJoined",
        {
            "event": "meeting.participantJoined",
            "meeting": _meeting_payload(meeting, session),
            "participant": _participant_payload(stay),
        },
    )
    return session, stay


async def participant_left(
    db: AsyncSession, stay_id: str, now: datetime | None = None, media_stats: list[dict[str, Any]] | None = None
) -> tuple[Session, SessionParticipant]:
    """Record a leave; returns the session (still LIVE until the keep-alive passes). The caller commits.

    ``media_stats`` (the room's per-track counters at the leave) is kept for the peer report, also when the
    leave itself was recorded earlier (a kick records it before the connection closes).
    """
    stay = await db.get(SessionParticipant, stay_id)
    if stay is None:
        raise NotFound("session participant not found")
    if media_stats is not None and stay.media_stats is None:
        stay.media_stats = media_stats
    session = await db.get(Session, stay.session_id)
    if session is None:  # pragma: no cover - the foreign key forbids it
        raise NotFound("session not found")
    if stay.left_at is None:
        now = now or utcnow()
        stay.left_at = now
        session.live_participants = max(0, session.live_participants - 1)
        session.minutes_consumed += (now - stay.joined_at).total_seconds() / 60.0
        meeting = await db.get(Meeting, session.meeting_id)
        if meeting is not None:
            emit(
                db,
                session.app_id,
                "meeting.participantLeft",
                {
                    "event": "meeting.participantLeft",
                    "meeting": _meeting_payload(meeting, session),
                    "participant": _participant_payload(stay),
                },
            )
        await db.flush()
    return session, stay


async def end_session_if_idle(
    db: AsyncSession, session_id: str, now: datetime | None = None, *, transcript_links: TranscriptLinks | None = None
) -> bool:
    """End the session if nobody is in it. Returns whether it ended now. The caller commits.

    ``transcript_links`` signs the transcript download URL of the ``meeting.transcript`` event, if one is sent.
    """
    session = await db.get(Session, session_id)
    if session is None or session.status != SessionStatus.LIVE:
        return False
    present = await db.scalar(
        select(func.count())
        .select_from(SessionParticipant)
        .where(SessionParticipant.session_id == session_id, SessionParticipant.left_at.is_(None))
    )
    if present:
        return False
    session.status = SessionStatus.ENDED
    session.ended_at = now or utcnow()
    meeting = await db.get(Meeting, session.meeting_id)
    if meeting is not None:
        emit(
            db,
            session.app_id,
            "meeting.ended",
            {
                "event": "meeting.ended",
                "meeting": _meeting_payload(meeting, session),
                "reason": "ALL_PARTICIPANTS_LEFT",
            },
        )
    if meeting is not None and meeting.summarize_on_end and await db.get(SessionSummary, session.id) is None:
        # The durable request; the presence's end hook hands it to the jobs runner once this commits.
        db.add(SessionSummary(session_id=session.id, app_id=session.app_id, status="PENDING", attempts=0))
    await db.flush()
    # An agent session's transcript is complete now: meeting.transcript (imported here: transcripts uses db).
    from roomtape.transcripts.ingest import on_session_ended

    await on_session_ended(db, session.id, links=transcript_links)
    return True


async def present_stays(db: AsyncSession, session_id: str) -> list[SessionParticipant]:
    """The stays of participants still in the session."""
    result = await db.scalars(
        select(SessionParticipant).where(
            SessionParticipant.session_id == session_id, SessionParticipant.left_at.is_(None)
        )
    )
    return list(result)


async def mark_all_left(db: AsyncSession, session_id: str, now: datetime | None = None) -> int:
    """Mark every present participant as left (used by kick-all). Returns how many."""
    stays = await present_stays(db, session_id)
    for stay in stays:
        await participant_left(db, stay.id, now)
    return len(stays)


async def leave_lost(db: AsyncSession, meeting_id: str, joined_before: datetime) -> Session | None:
    """Record the leave of the participants of a room whose node died.

    Those who joined before the node's last heartbeat have left; those who rejoined since, on another node,
    stay. The caller ends the session if it is idle (:func:`end_session_if_idle`) and commits.

    Returns:
        The meeting's live session, if it had one.
    """
    session = await live_session(db, meeting_id)
    if session is None:
        return None
    for stay in await present_stays(db, session.id):
        joined = stay.joined_at if stay.joined_at.tzinfo else stay.joined_at.replace(tzinfo=joined_before.tzinfo)
        if joined <= joined_before:
            await participant_left(db, stay.id, joined_before)
    return session


async def touch(db: AsyncSession, session_id: str) -> None:
    """Bump ``updated_at`` of a session."""
    await db.execute(update(Session).where(Session.id == session_id).values(updated_at=utcnow()))


def _meeting_payload(meeting: Meeting, session: Session) -> dict[str, object]:
    return {
        "id": meeting.id,
        "sessionId": session.id,
        "title": meeting.title,
        "status": session.status,
        "createdAt": _iso(session.created_at),
        "startedAt": _iso(session.started_at),
        "endedAt": _iso(session.ended_at) if session.ended_at else None,
        "organizedBy": {"id": meeting.app_id},
    }


def _participant_payload(stay: SessionParticipant) -> dict[str, object]:
    return {
        "peerId": stay.id,
        "userId": stay.participant_id,
        "customParticipantId": stay.custom_participant_id,
        "displayName": stay.display_name,
        "joinedAt": _iso(stay.joined_at),
        "leftAt": _iso(stay.left_at) if stay.left_at else None,
    }
