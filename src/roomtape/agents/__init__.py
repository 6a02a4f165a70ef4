"""Python participants for roomtape meetings.

``RoomClient`` joins, publishes, receives, mutes and leaves; ``whip_publish`` publishes only, over WHIP.
"""

from roomtape.agents.client import (
    ClientEvent,
    ClientEventName,
    JoinError,
    RemoteParticipant,
    RemoteTrack,
    RoomClient,
    SignalingError,
    TrackKind,
    TrackSource,
    WhipError,
    WhipSession,
    whip_publish,
)
from roomtape.agents.tracks import AUDIO_SAMPLE_RATE, AudioPushTrack, MuteGate, VideoPushTrack

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "AudioPushTrack",
    "ClientEvent",
    "ClientEventName",
    "JoinError",
    "MuteGate",
    "RemoteParticipant",
    "RemoteTrack",
    "RoomClient",
    "SignalingError",
    "TrackKind",
    "TrackSource",
    "VideoPushTrack",
    "WhipError",
    "WhipSession",
    "whip_publish",
]
