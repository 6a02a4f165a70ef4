import json
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal, Protocol

import av
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.stream import AudioStream
from av.codec.context import Flags
from av.container import OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from roomtape.errors import InvalidInput
from roomtape.recording.compose.audio import MIX_RATE, Samples
from roomtape.recording.compose.options import (
    AudioFormat,
    OutputFormat,
    StreamInfo,
    VideoCodec,
    default_video_bitrate,
)

__all__ = ["CHANNEL_MAP_TAG", "AudioSpec", "OutputFile", "PacketSink", "StreamPacket", "VideoSpec", "channel_layout"]

CHANNEL_MAP_TAG: Final = "roomtape_channel_map"
"""Metadata key holding the JSON channel map (a list, per channel, of participant ids)."""

_LAYOUTS: Final[dict[int, str]] = {
    1: "mono",
    2: "stereo",
    3: "3.0",
    4: "4.0",
    5: "5.0(side)",
    6: "5.1(side)",
    7: "6.1",
    8: "7.1",
}

_AUDIO_CODEC: Final[dict[str, str]] = {
    "mp4": "aac",
    "aac": "aac",
    "webm": "libopus",
    "ogg": "libopus",
    "mp3": "libmp3lame",
}
_VIDEO_CODEC: Final[dict[str, str]] = {"h264": "libx264", "vp8": "libvpx", "vp9": "libvpx-vp9"}


@dataclass(slots=True)
class StreamPacket:
    """One encoded packet, copied before the render's own container consumed it (for `PacketSink`)."""

    kind: Literal["video", "audio"]
    data: bytes
    pts: int | None
    dts: int | None
    time_base: Fraction
    keyframe: bool
    duration: int

    @classmethod
    def copy(cls, kind: Literal["video", "audio"], packet: "Packet[Any]") -> "StreamPacket":
        """Copy ``packet`` (muxing it moves its data out, so copy first)."""
        tb = packet.time_base
        assert tb is not None
        return cls(kind, bytes(packet), packet.pts, packet.dts, tb, packet.is_keyframe, packet.duration or 0)

    def packet(self, stream: Stream, offset_seconds: Fraction = Fraction(0)) -> "Packet[Any]":
        """A new packet for ``stream``, its timestamps moved ``offset_seconds`` earlier."""
        shift = round(offset_seconds / self.time_base) if offset_seconds else 0
        out = Packet(self.data)
        out.time_base = self.time_base
        out.pts = None if self.pts is None else self.pts - shift
        out.dts = None if self.dts is None else self.dts - shift
        out.is_keyframe = self.keyframe
        if self.duration:
            out.duration = self.duration
        out.stream = stream
        return out

    def seconds(self) -> Fraction:
        """Its decode time in seconds."""
        ts = self.dts if self.dts is not None else self.pts
        return Fraction(ts or 0) * self.time_base


class PacketSink(Protocol):
    """Where a live render's encoded packets also go (`roomtape.livestream.outputs.StreamOutputs`).

    `OutputFile` calls `open` with its encoder streams once their parameters (extradata) are final, then
    `send` with a copy of every packet, before muxing the original into its own container.
    """

    @property
    def opened(self) -> bool:
        """Whether `open` ran."""
        ...

    def open(self, video: Stream | None, audio: Stream) -> None:
        """Create the outputs from the encoder streams."""
        ...

    def send(self, item: StreamPacket) -> None:
        """One packet."""
        ...


def channel_layout(channels: int) -> str:
    """The FFmpeg channel layout name used for a channel count (1..8)."""
    try:
        return _LAYOUTS[channels]
    except KeyError:
        raise InvalidInput(f"cannot write {channels} audio channels (1..8)") from None


@dataclass(frozen=True, slots=True)
class AudioSpec:
    """The audio stream of an output file."""

    channel_map: tuple[tuple[str, ...], ...]
    """Participants per channel (its length is the channel count); written as metadata."""
    sample_rate: int
    """Sample rate (Opus is always 48 kHz)."""
    bitrate: int
    """Bit rate, bits/s."""


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """The video stream of an output file."""

    codec: VideoCodec
    """Codec."""
    width: int
    """Picture width."""
    height: int
    """Picture height."""
    fps: Fraction
    """Constant frame rate."""
    crf: int
    """H.264 constant quality."""
    bitrate: int
    """VP8/VP9 target bit rate, H.264's cap (0: `default_video_bitrate`)."""
    preset: str
    """x264 preset."""
    threads: int
    """Encoder threads (0: the codec chooses)."""


def _container_format(fmt: OutputFormat | AudioFormat, path: Path) -> tuple[str, dict[str, str]]:
    if fmt == "mp4":
        return "mp4", {"movflags": "+faststart+use_metadata_tags"}
    if fmt == "aac":
        if path.suffix.lower() in (".m4a", ".mp4"):
            return "ipod", {"movflags": "+faststart+use_metadata_tags"}
        return "adts", {}
    return fmt, {}


class OutputFile:
    """One output container with its encoders: an optional video stream and one audio stream.

    Args:
        path: Where to write (the caller renames it into place); None writes no file (FFmpeg's null muxer:
            a livestream without a recording, whose packets only go to ``sink``).
        fmt: Output format.
        name_hint: The final file name (picks ADTS or m4a for ``aac``).
        audio: The audio stream.
        video: The video stream, if any.
        sink: Also gets every encoded packet (the live stream outputs); needs H.264/AAC (``mp4``).
    """

    def __init__(
        self,
        path: Path | None,
        fmt: OutputFormat | AudioFormat,
        name_hint: Path,
        audio: AudioSpec,
        video: VideoSpec | None = None,
        *,
        sink: PacketSink | None = None,
    ) -> None:
        channels = len(audio.channel_map)
        sample_rate = audio.sample_rate
        container_format, options = _container_format(fmt, name_hint)
        if sink is not None and fmt != "mp4":
            raise InvalidInput(f"a live stream carries H.264/AAC, not {fmt}")
        if path is None:
            container_format, options = "null", {}
        audio_codec = _AUDIO_CODEC[fmt]
        if audio_codec == "libmp3lame" and channels > 2:
            raise InvalidInput("mp3 holds at most 2 channels")
        if audio_codec == "libopus":
            sample_rate = 48000
        self.path = path
        self._sink = sink
        target = str(path) if path is not None else os.devnull
        self._container: OutputContainer = av.open(target, "w", format=container_format, container_options=options)
        self._video: VideoStream | None = None
        self._video_frames = 0
        try:
            tag = json.dumps([list(c) for c in audio.channel_map])
            self._container.metadata[CHANNEL_MAP_TAG] = tag
            if video is not None:
                codec, width, height, fps = video.codec, video.width, video.height, video.fps
                stream = self._container.add_stream(_VIDEO_CODEC[codec], rate=fps)
                assert isinstance(stream, VideoStream)
                ctx = stream.codec_context
                ctx.width, ctx.height, ctx.pix_fmt = width, height, "yuv420p"
                ctx.time_base = 1 / fps
                # libx264 picks its own thread count for 0. libvpx's threads spin-wait: on a busy
                # machine (2 cores shared with other jobs) 2 threads ran 20-40x slower than 1.
                ctx.thread_count = video.threads or (0 if codec == "h264" else 1)
                ctx.gop_size = round(fps * 2)
                rate = video.bitrate or default_video_bitrate(width, height, float(fps))
                if codec == "h264":
                    # Capped CRF: constant quality, but never above the rate (buffer: 2 s of it).
                    cap = {"maxrate": str(rate), "bufsize": str(2 * rate)}
                    ctx.options = {"preset": video.preset, "crf": str(video.crf), **cap}
                else:
                    ctx.bit_rate = rate
                    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
                    if codec == "vp9":
                        ctx.options = {**ctx.options, "row-mt": "1", "tile-columns": "1"}
                if sink is not None:  # FLV and HLS need SPS/PPS as extradata (the null muxer does not ask)
                    ctx.flags |= Flags.global_header
                    if codec == "h264":  # a keyframe every 2 s exactly: no scene-cut one restarting the interval
                        ctx.options = {**ctx.options, "sc_threshold": "0"}
                self._video = stream
            astream = self._container.add_stream(audio_codec, rate=sample_rate, layout=channel_layout(channels))
            assert isinstance(astream, AudioStream)
            astream.codec_context.bit_rate = audio.bitrate
            if audio_codec == "libopus":
                astream.codec_context.options = {"application": "audio", "frame_duration": "20"}
            elif audio_codec == "aac":
                # FFmpeg's default AAC coder ("twoloop") took twice the CPU of "fast" here, and the AAC encoder
                # was most of an audio-only composite's CPU time; at 128 kbit/s "fast" is enough for a meeting.
                astream.codec_context.options = {"aac_coder": "fast"}
            if sink is not None:
                astream.codec_context.flags |= Flags.global_header
            astream.metadata[CHANNEL_MAP_TAG] = tag
            self._audio = astream
        except BaseException:
            self._container.close()
            raise
        self._layout = channel_layout(channels)
        self._channels = channels
        self._samples = 0

    def write_video(self, frame: VideoFrame) -> None:
        """Encode the next video frame (frames are numbered in order at the constant rate)."""
        assert self._video is not None
        frame.pts = self._video_frames
        frame.time_base = self._video.codec_context.time_base
        self._video_frames += 1
        self._mux("video", self._video.encode(frame))

    def write_audio(self, samples: Samples) -> None:
        """Encode the next block of 48 kHz planar float samples, shape (channels, n)."""
        n = samples.shape[1]
        if not n:
            return
        frame = AudioFrame.from_ndarray(np.ascontiguousarray(samples), format="fltp", layout=self._layout)
        frame.sample_rate = MIX_RATE
        frame.pts = self._samples
        frame.time_base = Fraction(1, MIX_RATE)
        self._samples += n
        self._mux("audio", self._audio.encode(frame))

    def _mux(self, kind: Literal["video", "audio"], packets: "list[Packet[Any]]") -> None:
        sink = self._sink
        if sink is None:
            self._container.mux(packets)
            return
        for packet in packets:
            copy = StreamPacket.copy(kind, packet)  # muxing moves the packet's data out
            self._container.mux(packet)
            if not sink.opened:  # the first mux opened every encoder: their extradata is known now
                sink.open(self._video, self._audio)
            sink.send(copy)

    def close(self) -> list[StreamInfo]:
        """Flush the encoders and write the trailer.

        Returns:
            What the file holds.
        """
        infos: list[StreamInfo] = []
        try:
            if self._video is not None:
                self._mux("video", self._video.encode(None))
                ctx = self._video.codec_context
                infos.append(
                    StreamInfo(
                        kind="video",
                        codec=ctx.name.removeprefix("lib")
                        .replace("x264", "h264")
                        .replace("vpx-vp9", "vp9")
                        .replace("vpx", "vp8"),
                        width=ctx.width,
                        height=ctx.height,
                        fps=float(1 / ctx.time_base),
                        frames=self._video_frames,
                    )
                )
            self._mux("audio", self._audio.encode(None))
            actx = self._audio.codec_context
            infos.append(
                StreamInfo(
                    kind="audio",
                    codec=actx.name.removeprefix("lib").replace("mp3lame", "mp3"),
                    channels=self._channels,
                    sample_rate=actx.sample_rate,
                )
            )
        finally:
            self._container.close()
        return infos

    def abort(self) -> None:
        """Close without flushing (the caller deletes the file)."""
        try:
            self._container.close()
        except av.FFmpegError:
            pass
