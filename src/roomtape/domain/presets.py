"""Presets: what a participant may do in a meeting, as RealtimeKit's preset object describes it.

A preset is a named document of ``config`` (view type, media quality), ``permissions`` and ``ui``, with the
fields and names of the Cloudflare SDK's ``types/realtime_kit/preset_*`` (seen there as ``Data``). Every
app starts with :data:`DEFAULT_PRESET_NAMES`; a participant names one preset (``preset_name``).

roomtape enforces the part of a preset that concerns media and signaling, condensed into a
:class:`PresetPolicy`:

- ``permissions.media.{audio,video,screenshare}.can_produce``: only ``ALLOWED`` lets the participant publish
  that kind (``CAN_REQUEST`` has no request flow here, so it counts as not allowed);
- ``permissions.can_subscribe`` (roomtape extension, default true): receive the others' tracks;
- ``permissions.hidden_participant``: the others see no join, leave or track of this participant;
- ``permissions.can_record``: start and stop the meeting's recording from the client (signaling);
- ``permissions.chat.public.can_send`` and ``.text``: send chat messages over signaling;
- ``config.media.video.quality`` / ``config.media.screenshare.quality``: the largest picture size forwarded
  and recorded (``qvga`` 320x240 ... ``uhd`` 3840x2160), read from VP8 keyframe headers and H.264 SPS.

The other fields (private chat, polls, plugins, UI tokens) are stored and returned as they were given.
No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints

__all__ = [
    "DEFAULT_PRESETS",
    "DEFAULT_PRESET_NAMES",
    "QUALITY_SIZES",
    "UNRESTRICTED",
    "PresetConfig",
    "PresetDocument",
    "PresetPermissions",
    "PresetPolicy",
    "PresetUI",
    "Produce",
    "Quality",
    "deep_merge",
    "policy_of",
]

Quality = Literal["hd", "vga", "qvga", "fhd", "uhd"]
Produce = Literal["ALLOWED", "NOT_ALLOWED", "CAN_REQUEST"]

QUALITY_SIZES: Final[dict[str, tuple[int, int]]] = {
    "qvga": (320, 240),
    "vga": (640, 480),
    "hd": (1280, 720),
    "fhd": (1920, 1080),
    "uhd": (3840, 2160),
}
"""Largest picture (landscape width, height) of each quality; portrait pictures may swap the two."""

_Text = Annotated[str, StringConstraints(max_length=255, pattern=r"^[^\x00]*$")]
_Count = Annotated[float, Field(ge=0, le=10_000)]


def _whole_float_to_int(value: Any) -> Any:
    # JSON Schema counts 720.0 as an integer; strict pydantic would not.
    return int(value) if isinstance(value, float) and value.is_integer() else value


_Lines = Annotated[int, Field(ge=0, le=4320), BeforeValidator(_whole_float_to_int)]


class _Part(BaseModel):
    # Strict like the rest of the API (``0`` is no boolean); unknown fields ignored (newer SDKs send more).
    model_config = ConfigDict(extra="ignore", strict=True)


# ------------------------------------------------------------------------------------------------ config
class MaxVideoStreams(_Part):
    """Maximum number of streams that are visible on a device."""

    desktop: _Count = 25
    mobile: _Count = 6


class MediaQuality(_Part):
    """Frame rate and quality of participants' video (``config.media.video``)."""

    frame_rate: Annotated[float, Field(ge=1, le=120)] = 30
    quality: Quality = "hd"
    simulcast: bool | None = None


class ScreenshareQuality(_Part):
    """Frame rate and quality of screen shares (``config.media.screenshare``)."""

    frame_rate: Annotated[float, Field(ge=1, le=120)] = 5
    quality: Quality = "fhd"


class AudioQuality(_Part):
    """Audio quality options (``config.media.audio``)."""

    enable_high_bitrate: bool | None = None
    enable_stereo: bool | None = None


class ConfigMedia(_Part):
    """Media configuration."""

    screenshare: ScreenshareQuality = Field(default_factory=ScreenshareQuality)
    video: MediaQuality = Field(default_factory=MediaQuality)
    audio: AudioQuality | None = None


class PresetConfig(_Part):
    """``config`` of a preset."""

    max_screenshare_count: _Count = 1
    max_video_streams: MaxVideoStreams = Field(default_factory=MaxVideoStreams)
    media: ConfigMedia = Field(default_factory=ConfigMedia)
    view_type: Literal["GROUP_CALL", "WEBINAR", "AUDIO_ROOM", "LIVESTREAM"] = "GROUP_CALL"
    livestream_viewer_qualities: list[_Lines] | None = Field(None, max_length=16)


# ------------------------------------------------------------------------------------------- permissions
class ChatPrivate(_Part):
    """Private chat permissions."""

    can_receive: bool = True
    can_send: bool = True
    files: bool = True
    text: bool = True


class ChatPublic(_Part):
    """Public chat permissions."""

    can_send: bool = True
    files: bool = True
    text: bool = True


class Chat(_Part):
    """Chat permissions."""

    private: ChatPrivate = Field(default_factory=ChatPrivate)
    public: ChatPublic = Field(default_factory=ChatPublic)


class ConnectedMeetings(_Part):
    """Breakout room permissions."""

    can_alter_connected_meetings: bool = False
    can_switch_connected_meetings: bool = False
    can_switch_to_parent_meeting: bool = False


class CanProduce(_Part):
    """Whether the participant may publish one kind of media."""

    can_produce: Produce = "ALLOWED"


class PermissionsMedia(_Part):
    """Media permissions."""

    audio: CanProduce = Field(default_factory=CanProduce)
    screenshare: CanProduce = Field(default_factory=CanProduce)
    video: CanProduce = Field(default_factory=CanProduce)


class PluginConfig(BaseModel):
    """Per-plugin access (kept as given; plugins do not exist in roomtape)."""

    model_config = ConfigDict(extra="allow", strict=True)

    access_control: Literal["FULL_ACCESS", "VIEW_ONLY"] | None = None
    handles_view_only: bool | None = None


class Plugins(_Part):
    """Plugin permissions."""

    can_close: bool = False
    can_edit_config: bool = False
    can_start: bool = False
    config: dict[Annotated[str, StringConstraints(max_length=64)], PluginConfig] = Field(
        default_factory=dict, max_length=64
    )


class Polls(_Part):
    """Poll permissions."""

    can_create: bool = False
    can_view: bool = True
    can_vote: bool = True


class PresetPermissions(_Part):
    """``permissions`` of a preset."""

    accept_waiting_requests: bool = False
    can_accept_production_requests: bool = False
    can_change_participant_permissions: bool = False
    can_edit_display_name: bool = True
    can_livestream: bool = False
    can_record: bool = False
    can_spotlight: bool = False
    chat: Chat = Field(default_factory=Chat)
    connected_meetings: ConnectedMeetings = Field(default_factory=ConnectedMeetings)
    disable_participant_audio: bool = False
    disable_participant_screensharing: bool = False
    disable_participant_video: bool = False
    hidden_participant: bool = False
    kick_participant: bool = False
    media: PermissionsMedia = Field(default_factory=PermissionsMedia)
    pin_participant: bool = False
    plugins: Plugins = Field(default_factory=Plugins)
    polls: Polls = Field(default_factory=Polls)
    recorder_type: Literal["RECORDER", "LIVESTREAMER", "NONE"] = "NONE"
    show_participant_list: bool = True
    waiting_room_type: Literal["SKIP", "ON_PRIVILEGED_USER_ENTRY", "SKIP_ON_ACCEPT"] = "SKIP"
    accept_stage_requests: bool | None = None
    is_recorder: bool | None = None
    stage_access: Produce | None = None
    stage_enabled: bool | None = None
    transcription_enabled: bool | None = None
    can_subscribe: bool = True
    """roomtape extension: whether the participant receives the others' tracks."""


# ------------------------------------------------------------------------------------------------- ui
_Colour = Annotated[str, StringConstraints(max_length=64, pattern=r"^[^\x00]*$")]


class Background(_Part):
    """Background shades."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    c1000: _Colour = Field("#081C15", alias="1000")
    c600: _Colour = Field("#222222", alias="600")
    c700: _Colour = Field("#1F1F1F", alias="700")
    c800: _Colour = Field("#1B1B1B", alias="800")
    c900: _Colour = Field("#181818", alias="900")


class Brand(_Part):
    """Brand shades."""

    model_config = ConfigDict(extra="ignore", strict=True, populate_by_name=True)

    c300: _Colour = Field("#844D1C", alias="300")
    c400: _Colour = Field("#9D5B22", alias="400")
    c500: _Colour = Field("#B56927", alias="500")
    c600: _Colour = Field("#D37C30", alias="600")
    c700: _Colour = Field("#D9904F", alias="700")


class Colors(_Part):
    """Colour tokens."""

    background: Background = Field(default_factory=Background)
    brand: Brand = Field(default_factory=Brand)
    danger: _Colour = "#FF2D2D"
    success: _Colour = "#62A504"
    text: _Colour = "#EEEEEE"
    text_on_brand: _Colour = "#EEEEEE"
    video_bg: _Colour = "#191919"
    warning: _Colour = "#FFCD07"


class DesignTokens(_Part):
    """Design tokens of the meeting UI."""

    border_radius: Literal["sharp", "rounded", "extra-rounded", "circular"] = "rounded"
    border_width: Literal["none", "thin", "fat"] = "thin"
    colors: Colors = Field(default_factory=Colors)
    spacing_base: Annotated[float, Field(ge=0, le=100)] = 4
    theme: Literal["darkest", "dark", "light"] = "dark"
    font_family: _Text | None = None
    google_font: _Text | None = None
    logo: Annotated[str, StringConstraints(max_length=2048, pattern=r"^[^\x00]*$")] | None = None


class PresetUI(_Part):
    """``ui`` of a preset (stored and returned; roomtape's pages do not use it)."""

    design_tokens: DesignTokens = Field(default_factory=DesignTokens)


class PresetDocument(_Part):
    """The three parts of a preset besides its name."""

    config: PresetConfig = Field(default_factory=PresetConfig)
    permissions: PresetPermissions = Field(default_factory=PresetPermissions)
    ui: PresetUI = Field(default_factory=PresetUI)


# ---------------------------------------------------------------------------------------------- defaults
def _doc(view_type: str, permissions: dict[str, Any]) -> dict[str, Any]:
    return PresetDocument.model_validate({"config": {"view_type": view_type}, "permissions": permissions}).model_dump(
        mode="json", by_alias=True
    )


_NO_MEDIA: Final = {k: {"can_produce": "NOT_ALLOWED"} for k in ("audio", "video", "screenshare")}

DEFAULT_PRESETS: Final[dict[str, dict[str, Any]]] = {
    "group_call_host": _doc(
        "GROUP_CALL",
        {
            "can_record": True,
            "can_livestream": True,
            "kick_participant": True,
            "pin_participant": True,
            "can_spotlight": True,
            "accept_waiting_requests": True,
            "can_accept_production_requests": True,
            "can_change_participant_permissions": True,
            "disable_participant_audio": True,
            "disable_participant_video": True,
            "disable_participant_screensharing": True,
            "polls": {"can_create": True, "can_view": True, "can_vote": True},
            "plugins": {"can_close": True, "can_edit_config": True, "can_start": True, "config": {}},
            "transcription_enabled": True,
        },
    ),
    "group_call_participant": _doc("GROUP_CALL", {}),
    "webinar_viewer": _doc(
        "WEBINAR",
        {"media": _NO_MEDIA, "chat": {"private": {"can_send": False}}, "show_participant_list": False},
    ),
    "livestream_viewer": _doc(
        "LIVESTREAM",
        {"media": _NO_MEDIA, "show_participant_list": False, "polls": {"can_vote": False}},
    ),
}
"""Presets every new app starts with: ``{name: {"config", "permissions", "ui"}}`` in their JSON form."""

DEFAULT_PRESET_NAMES: Final = tuple(DEFAULT_PRESETS)


def deep_merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``patch`` laid over it: nested objects merge, anything else replaces.

    Args:
        base: The stored document.
        patch: What a partial update gives.

    Returns:
        A new dict; neither argument is changed.
    """
    out = dict(base)
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------------ policy
@dataclass(frozen=True, slots=True)
class PresetPolicy:
    """What the media plane and signaling enforce for one participant (see the module docstring)."""

    preset_name: str
    """The preset it comes from (named in refusals)."""
    publish_audio: bool = True
    publish_video: bool = True
    publish_screen: bool = True
    subscribe: bool = True
    hidden: bool = False
    record: bool = False
    """May start and stop the meeting's recording from the client."""
    chat: bool = True
    """May send (public, text) chat messages."""
    max_video: tuple[int, int] | None = None
    """Largest camera picture (landscape width, height); None: no limit."""
    max_screen: tuple[int, int] | None = None
    """Largest screen-share picture."""
    view_polls: bool = True
    """Receives polls (``permissions.polls.can_view``)."""
    vote: bool = True
    """May vote in polls (``permissions.polls.can_vote``)."""

    def may_publish(self, kind: str) -> bool:
        """Whether a track of ``kind`` (audio, video, screen_audio, screen_video) may be published."""
        if kind == "audio":
            return self.publish_audio
        if kind == "video":
            return self.publish_video
        return self.publish_screen

    def max_size(self, kind: str) -> tuple[int, int] | None:
        """The largest picture allowed for a video track of ``kind``."""
        return self.max_screen if kind == "screen_video" else self.max_video if kind == "video" else None

    @staticmethod
    def fits(size: tuple[int, int], limit: tuple[int, int]) -> bool:
        """Whether a ``(width, height)`` picture fits ``limit`` in either orientation."""
        return max(size) <= max(limit) and min(size) <= min(limit)


UNRESTRICTED: Final = PresetPolicy("unrestricted", record=True)
"""The policy of code that joins rooms without a participant row (tests of the media plane, benches)."""


def policy_of(name: str, document: dict[str, Any]) -> PresetPolicy:
    """Condense a stored preset document into what is enforced.

    Args:
        name: The preset's name.
        document: ``{"config", "permissions", "ui"}`` as stored.

    Returns:
        The participant's policy.
    """
    doc = PresetDocument.model_validate(document)
    media = doc.permissions.media
    return PresetPolicy(
        preset_name=name,
        publish_audio=media.audio.can_produce == "ALLOWED",
        publish_video=media.video.can_produce == "ALLOWED",
        publish_screen=media.screenshare.can_produce == "ALLOWED",
        subscribe=doc.permissions.can_subscribe,
        hidden=doc.permissions.hidden_participant,
        record=doc.permissions.can_record,
        chat=doc.permissions.chat.public.can_send and doc.permissions.chat.public.text,
        max_video=QUALITY_SIZES[doc.config.media.video.quality],
        max_screen=QUALITY_SIZES[doc.config.media.screenshare.quality],
        view_polls=doc.permissions.polls.can_view,
        vote=doc.permissions.polls.can_vote,
    )
