"""SQLAlchemy models. Names follow the RealtimeKit objects (seed 004); one app owns everything below it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from roomtape.domain.ids import new_id


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, on SQLite as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Normalise to UTC before storing."""
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """SQLite hands back naive datetimes: they were stored as UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base with a naming convention, so migrations name constraints the same everywhere."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class Account(Base):
    """An account owns apps; API tokens are issued per account."""

    __tablename__ = "accounts"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class App(Base):
    """A RealtimeKit app: the unit every meeting, participant, session and webhook belongs to."""

    __tablename__ = "apps"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    api_secret: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Secret that signs VideoSDK-style JWTs (``apikey`` = app id), sealed with ``domain.secretbox``."""
    storage_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """App-wide default storage of recordings that name none; secrets sealed (``domain.secretbox``)."""


class ApiToken(Base):
    """An API token of an account, stored as its SHA-256 hash."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(255), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SigninLink(Base):
    """A one-time dashboard sign-in link (``roomtape serve`` prints one for the demo app).

    Only the SHA-256 of the link's secret is kept; the API token the link signs in with is sealed
    (``domain.secretbox``), because the dashboard session needs it in clear and tokens are stored hashed.
    """

    __tablename__ = "signin_links"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    api_token_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)
    """Set by the one redemption the link allows."""


class Meeting(Base):
    """A meeting room; its sessions are the live occurrences."""

    __tablename__ = "meetings"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    record_on_start: Mapped[bool] = mapped_column(Boolean, default=False)
    live_stream_on_start: Mapped[bool] = mapped_column(Boolean, default=False)
    persist_chat: Mapped[bool] = mapped_column(Boolean, default=False)
    summarize_on_end: Mapped[bool] = mapped_column(Boolean, default=False)
    transcribe_on_end: Mapped[bool] = mapped_column(Boolean, default=False)
    session_keep_alive_time_in_secs: Mapped[float] = mapped_column(Float, default=60.0)
    ai_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    recording_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """Stored with the secret fields of ``storage_config`` encrypted (see ``domain.secretbox``)."""
    custom_room_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """VideoSDK's ``customRoomId``: the app's own name for the room, unique per app (``POST /v2/rooms``)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_meetings_app_created", "app_id", "created_at"),
        UniqueConstraint("app_id", "custom_room_id", name="uq_meetings_app_custom_room"),
    )


class Preset(Base):
    """A RealtimeKit preset of an app: what its participants may do (``roomtape.domain.presets``)."""

    __tablename__ = "presets"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(255))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    permissions: Mapped[dict[str, Any]] = mapped_column(JSON)
    ui: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("app_id", "name", name="uq_presets_app_name"),
        Index("ix_presets_app_created", "app_id", "created_at"),
    )


class Participant(Base):
    """A participant added to a meeting; joins with a signed token."""

    __tablename__ = "participants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"))
    custom_participant_id: Mapped[str] = mapped_column(String(255))
    preset_name: Mapped[str] = mapped_column(String(255))
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    picture: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    token_version: Mapped[int] = mapped_column(Integer, default=0)
    """Bumped by "refresh token": older tokens stop working."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("meeting_id", "custom_participant_id", name="uq_participants_meeting_custom"),
        Index("ix_participants_meeting_created", "meeting_id", "created_at"),
    )


class Session(Base):
    """One live occurrence of a meeting (VideoSDK's ``sessionId``)."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="LIVE")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    live_participants: Mapped[int] = mapped_column(Integer, default=0)
    max_concurrent_participants: Mapped[int] = mapped_column(Integer, default=0)
    minutes_consumed: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (Index("ix_sessions_app_created", "app_id", "created_at"),)


class SessionParticipant(Base):
    """One stay of a participant in a session: from join to leave."""

    __tablename__ = "session_participants"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[str] = mapped_column(String(36), index=True)
    custom_participant_id: Mapped[str] = mapped_column(String(255))
    display_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    preset_name: Mapped[str] = mapped_column(String(255))
    joined_at: Mapped[datetime] = mapped_column(default=utcnow)
    left_at: Mapped[datetime | None] = mapped_column(nullable=True)
    media_stats: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, nullable=True)
    """Per published track at the leave: frames, bytes, RTP packets received/lost, jitter, NACKs, PLIs."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Webhook(Base):
    """A registered webhook endpoint of an app."""

    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    secret: Mapped[str] = mapped_column(Text)
    """Signing secret, encrypted at rest."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxEvent(Base):
    """An event waiting to be delivered to webhooks, written in the same transaction as its cause."""

    __tablename__ = "outbox_events"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    target_url: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    """A per-request URL (VideoSDK's ``webhookUrl``): delivered there in addition to registered webhooks."""
    recording_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    """The recording the event is about, if any (to list its deliveries)."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Recording(Base):
    """A recording as RealtimeKit describes it (seed 004); ``kind`` says composite or per-track."""

    __tablename__ = "recordings"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16), default="composite")
    """``composite`` (one file per meeting) or ``track`` (files per participant track)."""
    status: Mapped[str] = mapped_column(String(16), default="INVOKED")
    """INVOKED | RECORDING | PAUSED | UPLOADING | UPLOADED | ERRORED."""
    invoked_time: Mapped[datetime] = mapped_column(default=utcnow)
    started_time: Mapped[datetime | None] = mapped_column(nullable=True)
    """When the first frame was written (not when it was asked for)."""
    stopped_time: Mapped[datetime | None] = mapped_column(nullable=True)
    paused_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    """Total time spent PAUSED, excluded from ``recording_duration``."""
    paused_at: Mapped[datetime | None] = mapped_column(nullable=True)
    recording_duration: Mapped[int | None] = mapped_column(Integer, nullable=True)
    output_file_name: Mapped[str] = mapped_column(String(1024), default="")
    file_size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    download_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    download_url_expiry: Mapped[datetime | None] = mapped_column(nullable=True)
    audio_download_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    start_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    stop_reason: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    storage_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    """Secrets encrypted at rest (``domain.secretbox``)."""
    config: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    """Codecs, layout, max_seconds, file_name_prefix, webhook_url, bucket_dir_path, track filters."""
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    participant_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """Track recordings of one participant (VideoSDK): that participant; None for composite or whole-meeting."""
    track_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    """Track recordings of one kind (VideoSDK): audio | video | screen_audio | screen_video."""
    node_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    """The node (process) whose writers record it while it runs (``roomtape.cluster``): when that node's
    heartbeat stops, another process moves the recording on with ``INTERNAL_ERROR``."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_recordings_app_invoked", "app_id", "invoked_time"),
        Index("ix_recordings_status", "status"),
        Index("ix_recordings_meeting_kind_status", "meeting_id", "kind", "status"),
    )


class TrackFile(Base):
    """One continuous segment of one participant track, as written to disk (and later uploaded)."""

    __tablename__ = "track_files"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    recording_id: Mapped[str] = mapped_column(ForeignKey("recordings.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(String(36))
    participant_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(16))
    """audio | video | screen_audio | screen_video."""
    index: Mapped[int] = mapped_column(Integer)
    codec: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(String(2048))
    """Relative to the recording's base: ``{session}/{participant}/{kind}/{file}``."""
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime | None] = mapped_column(nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(nullable=True)
    first_rtp_timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    last_rtp_timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    frames: Mapped[int] = mapped_column(Integer, default=0)
    keyframes: Mapped[int] = mapped_column(Integer, default=0)
    gaps: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16), default="recording")
    """recording | complete | uploaded | failed."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WebhookDelivery(Base):
    """One attempt to deliver one outbox event to one URL, with what the receiver answered."""

    __tablename__ = "webhook_deliveries"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True)
    webhook_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    url: Mapped[str] = mapped_column(String(2048))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    """pending | delivered | failed (will retry) | dead (gave up)."""
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    response_body: Mapped[str | None] = mapped_column(Text, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TranscriptItem(Base):
    """One message of a session's transcript (see ``roomtape.transcripts.model`` for the fields' meaning)."""

    __tablename__ = "transcript_items"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(String(128))
    """The item's own id (LiveKit's ``item_…``); unique within the session."""
    kind: Mapped[str] = mapped_column(String(32))
    """conversation_item_added | user_input_transcribed."""
    role: Mapped[str] = mapped_column(String(16))
    content: Mapped[list[str]] = mapped_column(JSON)
    spoken_text: Mapped[str | None] = mapped_column(Text, nullable=True)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    participant_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    speaker_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    channel: Mapped[str | None] = mapped_column(String(8), nullable=True)
    start: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Seconds on the session clock."""
    end: Mapped[float | None] = mapped_column(Float, nullable=True)
    start_epoch: Mapped[float | None] = mapped_column(Float, nullable=True)
    end_epoch: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_epoch: Mapped[float] = mapped_column(Float)
    """LiveKit's ``created_at`` (Unix seconds, server clock)."""
    words: Mapped[list[Any]] = mapped_column(JSON, default=list)
    language: Mapped[str | None] = mapped_column(String(35), nullable=True)
    is_final: Mapped[bool] = mapped_column(Boolean, default=True)
    utterance_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="api")
    confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("session_id", "item_id", name="uq_transcript_items_session_item"),
        Index("ix_transcript_items_session_start", "session_id", "start_epoch"),
    )


class ChatMessage(Base):
    """A chat message of a session, stored when its meeting has ``persist_chat`` (see ``media.chat``)."""

    __tablename__ = "chat_messages"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    """The message id sent to the participants."""
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"))
    participant_id: Mapped[str] = mapped_column(String(36))
    """The sender; kept when the participant is deleted later."""
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """The sender's display name when it was sent."""
    text: Mapped[str] = mapped_column(Text)
    """Plain text, as written (never markup)."""
    sent_at: Mapped[datetime] = mapped_column()
    """When the server received it."""

    __table_args__ = (Index("ix_chat_messages_session_sent", "session_id", "sent_at"),)


class SessionSummary(Base):
    """The summary of a session's transcript (RealtimeKit's ``sessions/{id}/summary``), one per session."""

    __tablename__ = "session_summaries"
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="PENDING")
    """PENDING | RUNNING | COMPLETED | FAILED."""
    backend: Mapped[str | None] = mapped_column(String(255), nullable=True)
    """Which summarizer wrote it, e.g. ``extractive`` or ``openai-compatible:<model>``."""
    text: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The summary, plain text."""
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    """Why the last attempt failed."""
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TranscriptSegment(Base):
    """One closed stretch of one participant's audio in a live session, and its speech-to-text job.

    Written by the live transcription spool (:mod:`roomtape.recording.service`): a row when the stretch's
    first frame is written (``recording``), ``pending`` once the segment file is closed (the job is queued),
    then ``running`` → ``done`` | ``failed`` (:mod:`roomtape.jobs.transcribe_live`). The id is stable per
    (session, participant, kind, segment index), so a retried or resumed job finds the same row and replaces
    the same transcript items.
    """

    __tablename__ = "transcript_segments"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str] = mapped_column(ForeignKey("sessions.id", ondelete="CASCADE"), index=True)
    participant_id: Mapped[str] = mapped_column(String(36))
    kind: Mapped[str] = mapped_column(String(16), default="audio")
    index: Mapped[int] = mapped_column(Integer)
    """The segment's index in its track's manifest (from 1)."""
    path: Mapped[str] = mapped_column(Text)
    """The segment file, relative to the data directory (removed once transcribed)."""
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The media node that writes it (``roomtape.cluster``; None on a single server)."""
    status: Mapped[str] = mapped_column(String(16), default="recording")
    """recording | pending | running | done | failed."""
    start_epoch_ms: Mapped[int] = mapped_column(BigInteger)
    """Wall-clock time of the segment's first sample (from its timing manifest), ms since the Unix epoch."""
    end_epoch_ms: Mapped[int] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    items: Mapped[int] = mapped_column(Integer, default=0)
    """Transcript items the segment gave."""
    backend: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        UniqueConstraint("session_id", "participant_id", "kind", "index", name="uq_transcript_segments_track_index"),
        Index("ix_transcript_segments_status", "status"),
    )


class Livestream(Base):
    """A live stream of a meeting (RealtimeKit's livestream object): HLS served by roomtape, optionally an RTMP push.

    One start makes one livestream with one :class:`LivestreamSession` (its run). It runs on the node holding
    the meeting's room (``node_id``), in ``roomtape.livestream.engine``.
    """

    __tablename__ = "livestreams"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"))
    meeting_id: Mapped[str] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    session_id: Mapped[str | None] = mapped_column(String(36), nullable=True)
    """The meeting's session that was streamed."""
    name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="INVOKED")
    """INVOKED | LIVE | IDLE | ERRORED."""
    rtmp_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    """The RTMP(S) push target, sealed (``domain.secretbox``): its path holds the receiver's stream key."""
    ingest_server: Mapped[str | None] = mapped_column(String(2048), nullable=True)
    """The push target without its stream key (what the API shows)."""
    width: Mapped[int] = mapped_column(Integer, default=1280)
    height: Mapped[int] = mapped_column(Integer, default=720)
    start_reason: Mapped[str] = mapped_column(String(32), default="API_CALL")
    """API_CALL | LIVE_STREAM_ON_START."""
    node_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    """The node (process) that streams it."""
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index("ix_livestreams_app_created", "app_id", "created_at"),
        Index("ix_livestreams_status", "status"),
    )


class LivestreamSession(Base):
    """One run of a livestream: invoked, started (first HLS segment), stopped; ingest and viewer seconds."""

    __tablename__ = "livestream_sessions"
    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    livestream_id: Mapped[str] = mapped_column(ForeignKey("livestreams.id", ondelete="CASCADE"), index=True)
    app_id: Mapped[str] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    invoked_time: Mapped[datetime] = mapped_column(default=utcnow)
    started_time: Mapped[datetime | None] = mapped_column(nullable=True)
    stopped_time: Mapped[datetime | None] = mapped_column(nullable=True)
    ingest_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    """Seconds streamed (started to stopped)."""
    viewer_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    """Media seconds served to viewers: the duration of every HLS segment fetched through a playback URL."""
    err_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
