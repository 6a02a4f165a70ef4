from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Literal

from roomtape.errors import InvalidInput, RoomtapeError

__all__ = [
    "AudioFormat",
    "ChannelLayout",
    "ComposeCancelled",
    "ComposeOptions",
    "ComposeProgress",
    "ComposeResult",
    "ExportOptions",
    "Layout",
    "OutputFormat",
    "StreamInfo",
    "VideoCodec",
]

Layout = Literal["grid", "active_speaker", "audio_only"]
"""How video tiles are arranged; ``audio_only`` writes no video stream."""

OutputFormat = Literal["mp4", "webm", "ogg", "mp3", "aac"]
"""Container and codecs: mp4 = H.264/AAC, webm = VP8|VP9/Opus, ogg = Opus, mp3, aac = ADTS or m4a."""

AudioFormat = Literal["mp4", "ogg", "mp3", "aac", "webm"]
"""Formats an audio-only export file can take."""

VideoCodec = Literal["h264", "vp8", "vp9"]
"""Video codecs of the composite; mp4 takes h264, webm vp8 or vp9."""

ChannelLayout = Literal["mono", "stereo", "per_speaker", "agent_stereo"]
"""How the mixed audio is laid out on channels.

- ``mono``: everyone mixed into one channel.
- ``stereo``: everyone mixed, each source keeping its own stereo image.
- ``per_speaker``: one channel per participant (at most 8), in order of first appearance.
- ``agent_stereo``: the agent (``ComposeOptions.agent_participant_id``) on the right, everyone else
  mixed on the left.
"""

MAX_CHANNELS = 8
"""Most channels the encoders take (7.1)."""


class ComposeCancelled(RoomtapeError):
    """The render was cancelled through its cancel event; no output file was left behind."""


@dataclass(frozen=True, slots=True)
class ExportOptions:
    """A separate audio-only file written in the same pass (RealtimeKit ``audio_config.export_file``)."""

    path: Path
    """Where to write it (written to a temporary name first, then renamed)."""
    format: AudioFormat = "mp3"
    """Its format; its channel layout is the composite's."""


def default_video_bitrate(width: int, height: int, fps: float) -> int:
    """Bits/s for a picture size and frame rate when the options give none.

    3 Mbit/s at 1280x720 30 fps (what LiveKit's egress uses for 720p30), in proportion to pixels per second, at
    least 300 kbit/s. For H.264 it caps the constant quality: a meeting (faces, slides) stays under it at CRF 23
    anyway, while textured or noisy pictures, which would take 8-30 Mbit/s, no longer make the encoder (and the
    upload) pay for every detail.
    """
    return max(300_000, round(width * height * fps * 3_000_000 / (1280 * 720 * 30)))


@dataclass(frozen=True, slots=True)
class ComposeOptions:
    """What to render.

    The defaults make an MP4 (H.264/AAC) 1280x720 30 fps grid with stereo audio.
    """

    layout: Layout = "grid"
    """Video layout; forced to ``audio_only`` by the audio-only formats (ogg, mp3, aac)."""
    format: OutputFormat = "mp4"
    """Output container and codecs."""
    video_codec: VideoCodec | None = None
    """h264 for mp4 (the only choice); vp8 (default) or vp9 for webm."""
    channels: ChannelLayout = "stereo"
    """Audio channel layout."""
    agent_participant_id: str | None = None
    """The participant put on the right channel by ``agent_stereo``."""
    width: int = 1280
    """Output picture width (even)."""
    height: int = 720
    """Output picture height (even)."""
    fps: int | Fraction = 30
    """Output frame rate (constant)."""
    sample_rate: int = 48000
    """Output audio sample rate (the mix runs at 48 kHz; 44100 and others are resampled at the encoder)."""
    audio_bitrate: int = 128_000
    """Audio bit rate, bits/s."""
    video_crf: int = 23
    """Constant quality for H.264 (lower is better and bigger)."""
    video_bitrate: int = 0
    """Bits/s: the target for VP8/VP9, the cap on the constant quality (VBV ``maxrate``) for H.264; 0 picks one
    from the picture size and frame rate (`default_video_bitrate`: 3 Mbit/s at 1280x720 30 fps)."""
    preset: str = "superfast"
    """x264 preset: speed against compression. ``superfast`` with the bit rate cap keeps a 4 x 720p grid live on
    2 cores (about 0.3 CPU-s per media-s for the encoder, where ``veryfast`` took 0.6-0.8)."""
    threads: int = 0
    """Encoder threads; 0 lets the codec choose (all cores)."""
    session_ids: tuple[str, ...] = ()
    """Sessions under the base directory to include; empty means all."""
    presence_grace_ms: int = 2000
    """A participant's tile stays this long across a gap in their media, so a short mute does not
    reshuffle the layout."""
    speaker_hold_ms: int = 1500
    """Active speaker: the least time one speaker holds the big tile before another can take it."""
    speaker_margin_db: float = 3.0
    """Active speaker: how much louder (dB) another participant must be to take the big tile."""
    export: ExportOptions | None = None
    """An optional separate audio file."""
    opus_passthrough: bool = True
    """For ``ogg`` without an export file, where each channel carries one participant (``agent_stereo`` with one
    other speaker, ``per_speaker`` with up to 8, ``mono`` with one): copy each participant's own Opus packets into
    its channel instead of decoding, mixing and re-encoding. No generation loss and a small fraction of the CPU;
    ``audio_bitrate`` is then not applied (the file keeps the recorded bit rate) and each participant's audio is
    placed on a 20 ms grid, at most 10 ms from where the decoding path would place it. Tracks that cannot be
    copied (packets other than 20 ms) fall back to decoding on their own."""

    @property
    def effective_layout(self) -> Layout:
        """The layout after the format's constraints (audio formats carry no video)."""
        return "audio_only" if self.format in ("ogg", "mp3", "aac") else self.layout

    @property
    def effective_video_codec(self) -> VideoCodec:
        """The video codec after the format's default."""
        if self.video_codec is not None:
            return self.video_codec
        return "h264" if self.format == "mp4" else "vp8"

    def validate(self) -> None:
        """Check the options against each other.

        Raises:
            InvalidInput: If a value is out of range or the combination cannot be written.
        """
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise InvalidInput(f"width and height must be even and at least 16, got {self.width}x{self.height}")
        if not 1 <= Fraction(self.fps) <= 120:
            raise InvalidInput(f"fps must be within 1..120, got {self.fps}")
        if self.video_codec is not None and self.effective_layout != "audio_only":
            allowed = {"mp4": ("h264",), "webm": ("vp8", "vp9")}.get(self.format, ())
            if self.video_codec not in allowed:
                raise InvalidInput(f"{self.format} cannot carry {self.video_codec} video")
        if self.channels == "agent_stereo" and not self.agent_participant_id:
            raise InvalidInput("agent_stereo needs agent_participant_id")
        if self.sample_rate not in (8000, 16000, 22050, 24000, 32000, 44100, 48000):
            raise InvalidInput(f"unsupported sample rate {self.sample_rate}")


@dataclass(frozen=True, slots=True)
class ComposeProgress:
    """A progress report, passed to the ``progress`` callback."""

    fraction: float
    """Share of the output's media time rendered, 0..1."""
    media_seconds: float
    """Output media time rendered so far."""
    elapsed_seconds: float
    """Wall time spent so far."""
    eta_seconds: float | None
    """Estimated wall time left, once there is enough to estimate from."""


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """One stream of a written file."""

    kind: Literal["video", "audio"]
    """Video or audio."""
    codec: str
    """Codec name as FFmpeg calls it (h264, vp8, vp9, aac, opus, mp3)."""
    width: int = 0
    """Picture width (video)."""
    height: int = 0
    """Picture height (video)."""
    fps: float = 0.0
    """Frame rate (video)."""
    frames: int = 0
    """Frames encoded (video)."""
    channels: int = 0
    """Channel count (audio)."""
    sample_rate: int = 0
    """Sample rate (audio)."""


@dataclass(frozen=True, slots=True)
class ComposeResult:
    """What a render produced."""

    path: Path
    """The file written."""
    duration_seconds: float
    """Media duration: the sum of the recorded spans."""
    size_bytes: int
    """File size."""
    streams: tuple[StreamInfo, ...]
    """Streams in the file."""
    channel_map: tuple[tuple[str, ...], ...]
    """For each audio channel in order, the participant ids mixed into it (also written into the file's
    metadata as ``roomtape_channel_map`` where the container has tags)."""
    participants: tuple[str, ...]
    """Participants that had media inside the spans, in order of first appearance."""
    render_seconds: float
    """Wall time the render took."""
    export: "ComposeResult | None" = field(default=None)
    """The separate audio file, if one was asked for."""
