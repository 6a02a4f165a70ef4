"""Closed sets of names used across roomtape, spelled as the RealtimeKit API spells them."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args


class MeetingStatus(StrEnum):
    """Whether participants may join a meeting."""

    ACTIVE = "ACTIVE"
    INACTIVE = "INACTIVE"


class SessionStatus(StrEnum):
    """A session is LIVE while participants are in it and ENDED after the keep-alive has passed."""

    LIVE = "LIVE"
    ENDED = "ENDED"


WebhookEvent = Literal[
    "meeting.started",
    "meeting.ended",
    "meeting.participantJoined",
    "meeting.participantLeft",
    "meeting.chatSynced",
    "recording.statusUpdate",
    "livestreaming.statusUpdate",
    "meeting.transcript",
    "meeting.summary",
]
"""The RealtimeKit webhook event names a webhook can subscribe to."""

WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)

KEEP_ALIVE_MIN_SECS = 60
KEEP_ALIVE_MAX_SECS = 600
KEEP_ALIVE_DEFAULT_SECS = 60
