"""Audio-only Opus composites without decoding: each participant's own packets become one stream of the file.

When every output channel carries exactly one participant (``agent_stereo`` with one other speaker,
``per_speaker`` with up to 8, ``mono`` with one), nothing has to be mixed: an Ogg Opus file with channel
mapping family 1 (RFC 7845 §5.1.1.2) holds one uncoupled mono stream per channel, and each stream can be the
participant's recorded packets, copied. No Opus decoding and no re-encoding: no generation loss, and the work
is demuxing plus a few bytes of framing per packet (measured in ``bench/audio_composite.py``).

The price is the 20 ms grid: a multistream packet carries one packet per stream, all of the same duration, so
each participant's packets are placed into 20 ms slots of the output, each at most 10 ms from where the
decoding composer would put it. Slots without media (before a participant joined, gaps, paused spans) get a
silent packet. Tracks whose packets are not all 20 ms (rare in WebRTC) cannot be placed so; `NotPassthrough`
is raised and the composer decodes and mixes instead.
"""

import io
import logging
import threading
from collections.abc import Callable, Generator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Final

import av
from av.container import OutputContainer

from roomtape.errors import RoomtapeError
from roomtape.recording.codecs import (
    OPUS_SAMPLE_RATE,
    OPUS_SILENCE,
    opus_multistream_head,
    opus_packet_samples,
    opus_self_delimited,
)
from roomtape.recording.compose.options import ComposeCancelled, StreamInfo
from roomtape.recording.compose.timeline import Segment, Timeline

__all__ = ["SLOT_SAMPLES", "NotPassthrough", "write_passthrough"]

log = logging.getLogger(__name__)

SLOT_SAMPLES: Final = 960
"""Samples per output packet: 20 ms at 48 kHz, WebRTC's Opus packet duration."""

_HALF_SLOT: Final = SLOT_SAMPLES // 2

# FFmpeg's Opus decoder puts the channels of mapping family 1 into FFmpeg's channel order, which differs from the
# header's Vorbis order (RFC 7845 §5.1.1.2) from 3 channels on: with an identity table, FFmpeg's channel c holds
# stream perm[c], perm being (0, 2, 1) for 3 channels, (0, 2, 1, 5, 3, 4) for 6 (libavcodec's
# ff_vorbis_channel_layout_offsets, found so by decoding one tone per stream). The composer's channel i is
# FFmpeg's channel i (the encoding path writes it so), so the table is perm's inverse; the composer tests decode
# one tone per participant to check it.
_STREAM_OF_CHANNEL: Final[dict[int, tuple[int, ...]]] = {
    1: (0,),
    2: (0, 1),
    3: (0, 2, 1),
    4: (0, 1, 2, 3),
    5: (0, 2, 1, 3, 4),
    6: (0, 2, 1, 4, 5, 3),
    7: (0, 2, 1, 5, 6, 4, 3),
    8: (0, 2, 1, 6, 7, 4, 5, 3),
}


class NotPassthrough(RoomtapeError):
    """The tracks cannot be copied packet by packet (a packet is not 20 ms, or a header is unusual)."""


def _placed_packets(segments: Sequence[Segment], timeline: Timeline) -> Generator[tuple[int, bytes]]:
    """One participant's packets in order, each at its wall-clock sample (as `AudioSource` places frames)."""
    for segment in segments:
        origin = timeline.wall_sample(segment.start_ms)
        try:
            with av.open(str(segment.path)) as container:
                stream = container.streams.audio[0]
                if stream.codec_context.name != "opus":
                    raise NotPassthrough(f"{segment.path}: {stream.codec_context.name}, not Opus")
                head = bytes(stream.codec_context.extradata or b"")
                if len(head) >= 18 and (head[10:12] != b"\0\0" or head[16:18] != b"\0\0"):
                    raise NotPassthrough(f"{segment.path}: pre-skip or output gain in OpusHead")
                # pts to 48 kHz samples in integers (Fraction arithmetic per packet was a third of the CPU)
                base = stream.time_base or Fraction(1, 1000)
                num, den = OPUS_SAMPLE_RATE * base.numerator, base.denominator
                half = den // 2
                for packet in container.demux(stream):
                    if packet.pts is None or not packet.size:
                        continue
                    data = bytes(packet)
                    if opus_packet_samples(data) != SLOT_SAMPLES:
                        raise NotPassthrough(f"{segment.path}: an Opus packet of {opus_packet_samples(data)} samples")
                    yield origin + (packet.pts * num + half) // den, data
        except av.FFmpegError as exc:  # a truncated or damaged file: keep what was read
            log.warning("%s: reading stopped: %s", segment.path, exc)


def _open(path: Path, channels: int, tag: str, tag_key: str) -> tuple[OutputContainer, av.audio.stream.AudioStream]:
    container = av.open(str(path), "w", format="ogg")
    try:
        container.metadata[tag_key] = tag
        # A codec-less stream cannot carry the OpusHead; a never-opened copy of an encoder's stream can (as
        # the track writer does for WebM).
        with av.open(io.BytesIO(), "w", format="ogg") as scratch:
            template = scratch.add_stream("libopus", rate=OPUS_SAMPLE_RATE, layout="mono")
            stream = container.add_stream_from_template(template)
        order = _STREAM_OF_CHANNEL[channels]
        stream.codec_context.extradata = opus_multistream_head(channels, order)
        stream.time_base = Fraction(1, OPUS_SAMPLE_RATE)
        stream.metadata[tag_key] = tag
    except BaseException:
        container.close()
        raise
    assert isinstance(stream, av.audio.stream.AudioStream)
    return container, stream


def write_passthrough(
    path: Path,
    channels: Sequence[Sequence[Segment]],
    timeline: Timeline,
    tag: tuple[str, str],
    *,
    cancel: threading.Event,
    progress: Callable[[int], None] | None = None,
) -> StreamInfo:
    """Write an Ogg Opus file with one stream per channel, copying each channel's packets.

    Args:
        path: The file to write (the caller renames it into place, or deletes it on an error).
        channels: Per output channel, the segments of the one participant on it (empty: a silent channel).
        timeline: The output timeline (pauses cut out).
        tag: Metadata (key, value) written on the file and its stream (the channel map).
        cancel: Checked once per second of output.
        progress: Called with the output samples written, once per second of output.

    Returns:
        The stream written.

    Raises:
        NotPassthrough: If a track cannot be copied (the file is then incomplete).
        ComposeCancelled: If cancelled.
    """
    n = len(channels)
    sources = [_placed_packets(segments, timeline) for segments in channels]
    heads = [next(source, None) for source in sources]
    total = timeline.total_samples
    slots = -(-total // SLOT_SAMPLES)
    container, stream = _open(path, n, tag[1], tag[0])
    silence_first = opus_self_delimited(OPUS_SILENCE)
    time_base = Fraction(1, OPUS_SAMPLE_RATE)
    try:
        for slot in range(slots):
            out_sample = slot * SLOT_SAMPLES
            if slot % 50 == 0:
                if cancel.is_set():
                    raise ComposeCancelled("composite render cancelled")
                if progress is not None:
                    progress(out_sample)
            wall = timeline.to_wall(out_sample)
            parts: list[bytes] = []
            for i, source in enumerate(sources):
                head = heads[i]
                while head is not None and head[0] < wall - _HALF_SLOT:  # behind the slot: a paused span, a repeat
                    head = next(source, None)
                if head is not None and head[0] < wall + _HALF_SLOT:
                    data = head[1]
                    head = next(source, None)
                    parts.append(data if i == n - 1 else opus_self_delimited(data))
                else:
                    parts.append(OPUS_SILENCE if i == n - 1 else silence_first)
                heads[i] = head
            packet = av.Packet(b"".join(parts))
            packet.stream = stream
            packet.time_base = time_base
            packet.pts = packet.dts = out_sample
            # The last packet's duration ends the file exactly at the timeline's end (the Ogg granule position
            # tells decoders to drop the rest of the slot).
            packet.duration = min(SLOT_SAMPLES, total - out_sample)
            container.mux_one(packet)
    finally:
        for source in sources:
            source.close()
        container.close()
    if progress is not None:
        progress(total)
    return StreamInfo(kind="audio", codec="opus", channels=n, sample_rate=OPUS_SAMPLE_RATE)
