"""Rows → RealtimeKit response bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import Query

from roomtape.api.routers.realtimekit import schemas as s
from roomtape.api.routers.realtimekit.schemas import NO_NUL
from roomtape.db.models import Meeting, Participant, Session, SessionParticipant, Webhook, utcnow
from roomtape.domain.secretbox import redact
from roomtape.errors import InvalidInput

PER_PAGE_DEFAULT = 20
PER_PAGE_MAX = 100


class Page:
    """``page_no`` (from 1) and ``per_page`` (1..100) query parameters."""

    def __init__(
        self,
        page_no: int = Query(1, ge=1, le=1_000_000, description="Page number, from 1"),
        per_page: int = Query(PER_PAGE_DEFAULT, ge=1, le=PER_PAGE_MAX, description="Rows per page"),
    ) -> None:
        self.page_no = page_no
        self.per_page = per_page

    @property
    def offset(self) -> int:
        """Rows before this page."""
        return (self.page_no - 1) * self.per_page


def iso(value: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as RealtimeKit writes timestamps in string fields."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def TimeQuery(description: str) -> Any:
    """A query parameter holding an ISO 8601 date-time (numbers are not accepted)."""
    return Query(
        None, max_length=64, pattern=NO_NUL, description=description, json_schema_extra={"format": "date-time"}
    )


def parse_time(name: str, value: str | None) -> datetime | None:
    """Parse an ISO 8601 query value; a value without a zone is taken as UTC.

    Raises:
        InvalidInput: the value is not an ISO 8601 date-time.
    """
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise InvalidInput(f"{name}: not an ISO 8601 date-time: {value[:64]!r}") from exc
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def recording_config_out(config: dict[str, Any] | None) -> s.RecordingConfigOut | None:
    """A stored recording config without storage secrets."""
    if config is None:
        return None
    data = dict(config)
    if data.get("storage_config") is not None:
        data["storage_config"] = redact(data["storage_config"])
    return s.RecordingConfigOut.model_validate(data)


def meeting_out(m: Meeting) -> s.MeetingOut:
    """A meeting as the API returns it."""
    return s.MeetingOut(
        id=m.id,
        created_at=m.created_at,
        updated_at=m.updated_at,
        title=m.title,
        status="INACTIVE" if m.status == "INACTIVE" else "ACTIVE",
        record_on_start=m.record_on_start,
        live_stream_on_start=m.live_stream_on_start,
        persist_chat=m.persist_chat,
        summarize_on_end=m.summarize_on_end,
        transcribe_on_end=m.transcribe_on_end,
        session_keep_alive_time_in_secs=m.session_keep_alive_time_in_secs,
        ai_config=s.AIConfig.model_validate(m.ai_config) if m.ai_config is not None else None,
        recording_config=recording_config_out(m.recording_config),
    )


def participant_out(p: Participant) -> s.ParticipantOut:
    """A participant without a token."""
    return s.ParticipantOut(
        id=p.id,
        created_at=p.created_at,
        updated_at=p.updated_at,
        custom_participant_id=p.custom_participant_id,
        preset_name=p.preset_name,
        name=p.name,
        picture=p.picture,
    )


def session_out(sess: Session, meeting: Meeting, now: datetime | None = None) -> s.SessionOut:
    """A session; ``minutes_consumed`` includes the running time of participants still present."""
    return s.SessionOut(
        id=sess.id,
        associated_id=sess.meeting_id,
        created_at=iso(sess.created_at),
        updated_at=iso(sess.updated_at),
        started_at=iso(sess.started_at),
        ended_at=iso(sess.ended_at) if sess.ended_at else None,
        live_participants=sess.live_participants,
        max_concurrent_participants=sess.max_concurrent_participants,
        meeting_display_name=meeting.title or "",
        minutes_consumed=round(sess.minutes_consumed, 4),
        organization_id=sess.app_id,
        status="ENDED" if sess.status == "ENDED" else "LIVE",
        type="meeting",
        breakout_rooms=[],
    )


def stay_duration_minutes(stay: SessionParticipant, now: datetime | None = None) -> float:
    """Minutes the participant has been (or was) in the session."""
    end = stay.left_at or now or utcnow()
    return max(0.0, (end - stay.joined_at).total_seconds() / 60.0)


def session_participant_out(
    stay: SessionParticipant, include_events: bool = False, now: datetime | None = None
) -> s.SessionParticipantOut:
    """A participant's stay in a session, optionally with its join/leave events."""
    events: list[s.PeerEvent] | None = None
    if include_events:
        events = [
            s.PeerEvent(
                id=f"{stay.id}:join",
                created_at=iso(stay.joined_at),
                updated_at=iso(stay.joined_at),
                event_name="PEER_JOINING",
                participant_id=stay.participant_id,
                peer_id=stay.id,
                session_id=stay.session_id,
            )
        ]
        if stay.left_at is not None:
            events.append(
                s.PeerEvent(
                    id=f"{stay.id}:leave",
                    created_at=iso(stay.left_at),
                    updated_at=iso(stay.left_at),
                    event_name="PEER_LEAVING",
                    participant_id=stay.participant_id,
                    peer_id=stay.id,
                    session_id=stay.session_id,
                    minutes_consumed=round(stay_duration_minutes(stay), 4),
                )
            )
    return s.SessionParticipantOut(
        id=stay.id,
        user_id=stay.participant_id,
        custom_participant_id=stay.custom_participant_id,
        display_name=stay.display_name,
        preset_name=stay.preset_name,
        joined_at=iso(stay.joined_at),
        left_at=iso(stay.left_at) if stay.left_at else None,
        duration=round(stay_duration_minutes(stay, now), 4),
        created_at=iso(stay.created_at),
        updated_at=iso(stay.updated_at),
        peer_events=events,
    )


def webhook_out(w: Webhook) -> s.WebhookOut:
    """A webhook without its signing secret."""
    return s.WebhookOut.model_validate(
        {
            "id": w.id,
            "name": w.name,
            "url": w.url,
            "events": w.events,
            "enabled": w.enabled,
            "created_at": w.created_at,
            "updated_at": w.updated_at,
        }
    )
