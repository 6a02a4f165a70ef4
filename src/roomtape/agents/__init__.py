"""Python participants for roomtape meetings.

``RoomClient`` joins, publishes, receives, mutes and leaves; ``whip_publish`` publishes only, over WHIP.
``JobContext`` / ``RoomOptions`` are the agent SDK (seed 000): a voice agent with PCM in and out, stream
events, ``recording=True`` and transcript items.
"""

from roomtape.agents.client import (
    ChatMessage,
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
from roomtape.agents.sdk import AgentRoom, JobContext, RoomOptions, Stream, StreamCallback
from roomtape.agents.tracks import AUDIO_SAMPLE_RATE, AudioPushTrack, MuteGate, VideoPushTrack

__all__ = [
    "AUDIO_SAMPLE_RATE",
    "AgentRoom",
    "AudioPushTrack",
    "ChatMessage",
    "ClientEvent",
    "ClientEventName",
    "JobContext",
    "JoinError",
    "MuteGate",
    "RemoteParticipant",
    "RemoteTrack",
    "RoomClient",
    "RoomOptions",
    "SignalingError",
    "Stream",
    "StreamCallback",
    "TrackKind",
    "TrackSource",
    "VideoPushTrack",
    "WhipError",
    "WhipSession",
    "whip_publish",
]
