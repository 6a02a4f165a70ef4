"""The meeting composite: one file rendered from the track files and their timing manifests.

Rendering never happens on the live media path (DESIGN.md, "Composite"): every segment is placed on the common
wall clock from its manifest, paused spans are cut out, audio is decoded and mixed at 48 kHz, video is decoded,
laid out and re-encoded at a constant rate. One renderer, two drivers (`roomtape.recording.compose.feed`): from
the closed files of a stopped recording (`compose`), or live, following the files while the recording runs
(`compose_live`, run by ``roomtape.recording.live`` in its own process), so that at the stop only the last
seconds are left to render. It is synchronous and CPU-bound: run it in a worker thread or a job process.
"""

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Final, Literal

import numpy as np

from roomtape.errors import InvalidInput
from roomtape.recording.compose.audio import MIX_RATE, AudioSource, Limiter, Samples, SpeakerDetector, level_db
from roomtape.recording.compose.canvas import Canvas
from roomtape.recording.compose.feed import Feed, FileFeed
from roomtape.recording.compose.layout import TileSource, arrange
from roomtape.recording.compose.options import (
    MAX_CHANNELS,
    ComposeCancelled,
    ComposeOptions,
    ComposeProgress,
    ComposeResult,
    ExportOptions,
    StreamInfo,
)
from roomtape.recording.compose.output import CHANNEL_MAP_TAG, AudioSpec, OutputFile, PacketSink, VideoSpec
from roomtape.recording.compose.passthrough import NotPassthrough, write_passthrough
from roomtape.recording.compose.timeline import Participant, Segment
from roomtape.recording.compose.video import VideoSource
from roomtape.recording.manifest import TrackKind

__all__ = [
    "CHANNEL_MAP_TAG",
    "ComposeCancelled",
    "ComposeOptions",
    "ComposeProgress",
    "ComposeResult",
    "Composer",
    "ExportOptions",
    "StreamInfo",
    "compose",
    "compose_live",
    "live_supported",
]

log = logging.getLogger(__name__)

ProgressCallback = Callable[[ComposeProgress], None]

_AUDIO_ONLY_BLOCK: Final = Fraction(1, 10)  # seconds of audio per step when there is no video
_PROGRESS_INTERVAL: Final = 0.5  # seconds of wall time between progress reports


def live_supported(options: ComposeOptions) -> bool:
    """Whether the live driver can render these options.

    Channel layouts that give each participant a channel (``per_speaker``, ``agent_stereo``) need the
    participants up front, and so does copying Opus packets: those are rendered from the files at the stop.
    """
    return options.channels in ("mono", "stereo")


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.part")


def _close_sources(audio: dict[str, list[AudioSource]], video: dict[TileSource, VideoSource]) -> None:
    for sources in audio.values():
        for source in sources:
            source.close()
    for vsource in video.values():
        vsource.close()


class Composer:
    """Renders one composite (and optionally a separate audio file) from a recording's track files.

    Args:
        base_dir: The recording's root: ``{session_id}/{participant_id}/{kind}/`` folders with manifests.
        spans: The recorded (start_epoch_ms, end_epoch_ms) spans; what lies between them (pauses) is
            cut out, giving one continuous file.
        options: What to render.
        progress: Called from the rendering thread about twice a second, and once at the end.
        cancel: Set it (from any thread) to stop the render; `run` then raises `ComposeCancelled`.
        feed: Where the input comes from instead of ``base_dir`` and ``spans`` (e.g. a
            `~roomtape.recording.compose.feed.LiveFeed`).
        sink: Also gets the composite's encoded packets (live stream outputs, H.264/AAC only): encoded once,
            muxed into the file and into it.
    """

    def __init__(
        self,
        base_dir: Path,
        spans: Sequence[tuple[int, int]],
        options: ComposeOptions | None = None,
        *,
        progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
        feed: Feed | None = None,
        sink: PacketSink | None = None,
    ) -> None:
        self.options = options or ComposeOptions()
        self.options.validate()
        if feed is not None and feed.live and not live_supported(self.options):
            raise InvalidInput(f"a live render cannot lay out {self.options.channels} channels")
        self._feed: Feed = feed if feed is not None else FileFeed(base_dir, spans, self.options.session_ids)
        self.timeline = self._feed.timeline
        self._progress = progress
        self._cancel = cancel or threading.Event()
        self._sink = sink

    def cancel(self) -> None:
        """Ask the render to stop (thread-safe)."""
        self._cancel.set()

    def run(self, out_path: Path | None) -> ComposeResult:
        """Render into ``out_path`` (written under a temporary name, then renamed into place).

        Args:
            out_path: The composite file to write; None writes none (a live stream's render: only the sink
                gets the packets; the result's ``path`` is ``os.devnull`` and its size 0).

        Returns:
            What was written.

        Raises:
            ComposeCancelled: If cancelled; no output file is left behind.
            roomtape.errors.InvalidInput: If the options cannot be written (e.g. too many channels).
        """
        started = time.monotonic()
        opts = self.options
        timeline = self.timeline
        feed = self._feed
        participants = [p for p in feed.participants() if feed.live or self._overlaps(p)]
        ids = [p.participant_id for p in participants]
        channel_map = self._channel_map(ids)
        layout = opts.effective_layout
        fps = Fraction(opts.fps) if layout != "audio_only" else 1 / _AUDIO_ONLY_BLOCK
        stereo_sources = opts.channels == "stereo"

        if out_path is None:
            return self._render_unwritten(participants, channel_map, fps, layout, started)
        tmp = _temp_path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        copied = None if feed.live or self._sink is not None else self._passthrough_channels(participants, channel_map)
        if copied is not None:
            try:
                stream = write_passthrough(
                    tmp,
                    copied,
                    timeline,
                    (CHANNEL_MAP_TAG, json.dumps([list(c) for c in channel_map])),
                    cancel=self._cancel,
                    progress=lambda done: self._report(done, started),
                )
                os.replace(tmp, out_path)
                return ComposeResult(
                    path=out_path,
                    duration_seconds=timeline.duration_seconds,
                    size_bytes=out_path.stat().st_size,
                    streams=(stream,),
                    channel_map=channel_map,
                    participants=tuple(ids),
                    render_seconds=time.monotonic() - started,
                )
            except NotPassthrough as exc:
                log.info("%s: Opus packets not copied, decoding instead: %s", out_path.name, exc)
            finally:
                tmp.unlink(missing_ok=True)
        outputs: list[tuple[OutputFile, Path, Path]] = []
        audio_sources: dict[str, list[AudioSource]] = {}
        video_sources: dict[TileSource, VideoSource] = {}
        try:
            video = None
            if layout != "audio_only":
                video = VideoSpec(
                    opts.effective_video_codec,
                    opts.width,
                    opts.height,
                    fps,
                    opts.video_crf,
                    opts.video_bitrate,
                    opts.preset,
                    opts.threads,
                )
            audio = AudioSpec(channel_map, opts.sample_rate, opts.audio_bitrate)
            outputs.append((OutputFile(tmp, opts.format, out_path, audio, video, sink=self._sink), tmp, out_path))
            if opts.export is not None:
                wanted = opts.export
                export_tmp = _temp_path(wanted.path)
                wanted.path.parent.mkdir(parents=True, exist_ok=True)
                outputs.append((OutputFile(export_tmp, wanted.format, wanted.path, audio), export_tmp, wanted.path))

            self._sync_sources(participants, audio_sources, video_sources, 2 if stereo_sources else 1, layout)
            participants = self._render(
                participants,
                channel_map,
                fps,
                layout,
                [o for o, _, _ in outputs],
                audio_sources,
                video_sources,
                started,
            )
            if feed.live:  # who was there, now that the whole timeline is known
                participants = [p for p in participants if self._overlaps(p)]
                ids = [p.participant_id for p in participants]
                channel_map = self._channel_map(ids)

            results: list[ComposeResult] = []
            for output, part, final in outputs:
                streams = output.close()
                os.replace(part, final)
                results.append(
                    ComposeResult(
                        path=final,
                        duration_seconds=timeline.duration_seconds,
                        size_bytes=final.stat().st_size,
                        streams=tuple(streams),
                        channel_map=channel_map,
                        participants=tuple(ids),
                        render_seconds=time.monotonic() - started,
                    )
                )
            outputs.clear()
        except BaseException:
            for output, part, _ in outputs:
                output.abort()
                part.unlink(missing_ok=True)
            raise
        finally:
            _close_sources(audio_sources, video_sources)
        main = results[0]
        export = results[1] if len(results) > 1 else None
        return ComposeResult(
            path=main.path,
            duration_seconds=main.duration_seconds,
            size_bytes=main.size_bytes,
            streams=main.streams,
            channel_map=main.channel_map,
            participants=main.participants,
            render_seconds=time.monotonic() - started,
            export=export,
        )

    def _render_unwritten(
        self,
        participants: list[Participant],
        channel_map: tuple[tuple[str, ...], ...],
        fps: Fraction,
        layout: str,
        started: float,
    ) -> ComposeResult:
        """`run` without a file: the packets go to the sink only."""
        opts = self.options
        video = None
        if layout != "audio_only":
            video = VideoSpec("h264", opts.width, opts.height, fps, opts.video_crf, 0, opts.preset, opts.threads)
        output = OutputFile(
            None,
            "mp4",
            Path(os.devnull),
            AudioSpec(channel_map, opts.sample_rate, opts.audio_bitrate),
            video,
            sink=self._sink,
        )
        audio_sources: dict[str, list[AudioSource]] = {}
        video_sources: dict[TileSource, VideoSource] = {}
        try:
            per_source = 2 if opts.channels == "stereo" else 1
            self._sync_sources(participants, audio_sources, video_sources, per_source, layout)
            participants = self._render(
                participants, channel_map, fps, layout, [output], audio_sources, video_sources, started
            )
            streams = output.close()
        except BaseException:
            output.abort()
            raise
        finally:
            _close_sources(audio_sources, video_sources)
        ids = [p.participant_id for p in participants if self._overlaps(p)]
        return ComposeResult(
            path=Path(os.devnull),
            duration_seconds=self.timeline.duration_seconds,
            size_bytes=0,
            streams=tuple(streams),
            channel_map=self._channel_map(ids),
            participants=tuple(ids),
            render_seconds=time.monotonic() - started,
        )

    def _overlaps(self, participant: Participant) -> bool:
        return any(self.timeline.overlaps(a, b) for a, b in participant.intervals())

    def _sync_sources(
        self,
        participants: list[Participant],
        audio_sources: dict[str, list[AudioSource]],
        video_sources: dict[TileSource, VideoSource],
        channels: int,
        layout: str,
    ) -> None:
        """Create a source per track, or give an existing one the track's segments as they are now."""
        opener = self._feed.open
        for p in participants:
            have = audio_sources.setdefault(p.participant_id, [])
            kinds: list[TrackKind] = [kind for kind in ("audio", "screen_audio") if p.segments.get(kind)]
            for i, kind in enumerate(kinds):  # "audio" is kept first: a screen share's audio is appended
                if i < len(have) and have[i].kind == kind:
                    have[i].update(p.segments[kind])
                else:
                    have.insert(i, AudioSource(p.segments[kind], self.timeline, channels, opener, kind=kind))
            if layout == "audio_only":
                continue
            vkinds: tuple[Literal["video", "screen_video"], ...] = ("video", "screen_video")
            for vkind in vkinds:
                segments = p.segments.get(vkind)
                if not segments:
                    continue
                source = video_sources.get((p.participant_id, vkind))
                if source is None:
                    video_sources[(p.participant_id, vkind)] = VideoSource(segments, opener=opener)
                else:
                    source.update(segments)

    def _passthrough_channels(
        self, participants: list[Participant], channel_map: tuple[tuple[str, ...], ...]
    ) -> list[list[Segment]] | None:
        """Per channel, the one participant's audio segments, if the composite can copy packets.

        See `ComposeOptions.opus_passthrough`; None if it must decode and mix.
        """
        opts = self.options
        if not opts.opus_passthrough or opts.format != "ogg" or opts.export is not None or opts.channels == "stereo":
            return None
        if any(len(pids) > 1 for pids in channel_map):
            return None
        by_id = {p.participant_id: p for p in participants}
        if any(by_id[pid].segments.get("screen_audio") for pids in channel_map for pid in pids):
            return None  # two tracks on one channel: they must be mixed
        return [list(by_id[pids[0]].segments.get("audio", [])) if pids else [] for pids in channel_map]

    def _report(self, done_samples: int, started: float) -> None:
        if self._progress is None:
            return
        total = self.timeline.total_samples
        fraction = done_samples / total if total else 1.0
        elapsed = time.monotonic() - started
        eta = elapsed / fraction * (1 - fraction) if fraction > 0.01 else None
        self._progress(ComposeProgress(fraction, done_samples / MIX_RATE, elapsed, eta))

    def _channel_map(self, ids: list[str]) -> tuple[tuple[str, ...], ...]:
        opts = self.options
        if opts.channels == "mono":
            return (tuple(ids),)
        if opts.channels == "stereo":
            return (tuple(ids), tuple(ids))
        if opts.channels == "agent_stereo":
            agent = opts.agent_participant_id
            return (tuple(i for i in ids if i != agent), (agent,) if agent in ids else ())
        if not ids:
            return ((),)
        channels: list[tuple[str, ...]] = [(i,) for i in ids[: MAX_CHANNELS - 1]]
        rest = tuple(ids[MAX_CHANNELS - 1 :])
        if rest:
            channels.append(rest)  # more speakers than channels: the rest share the last one
        return tuple(channels)

    def _render(
        self,
        participants: list[Participant],
        channel_map: tuple[tuple[str, ...], ...],
        fps: Fraction,
        layout: str,
        outputs: list[OutputFile],
        audio_sources: dict[str, list[AudioSource]],
        video_sources: dict[TileSource, VideoSource],
        started: float,
    ) -> list[Participant]:
        """Render every step of the timeline (waiting for a live feed to grow); returns the participants seen."""
        opts = self.options
        timeline = self.timeline
        feed = self._feed
        grace = opts.presence_grace_ms

        def place(found: list[Participant]) -> tuple[dict[str, list[tuple[int, int]]], ...]:
            presence = {p.participant_id: p.intervals(grace_ms=grace) for p in found}
            screens = {p.participant_id: p.intervals(kinds=("screen_video",), grace_ms=0) for p in found}
            return presence, screens

        presence, screen_presence = place(participants)
        order = [p.participant_id for p in participants]
        channel_of = {pid: ch for ch, pids in enumerate(channel_map) for pid in pids}
        n_channels = len(channel_map)
        per_source = 2 if opts.channels == "stereo" else 1
        limiter = Limiter()
        speaker = SpeakerDetector(hold_seconds=opts.speaker_hold_ms / 1000, margin_db=opts.speaker_margin_db)
        canvas = Canvas(opts.width, opts.height) if layout != "audio_only" else None
        half_frame = Fraction(MIX_RATE) / fps / 2
        last_report = started

        step = 0
        while True:
            if self._cancel.is_set():
                raise ComposeCancelled("composite render cancelled")
            a0 = round(Fraction(step * MIX_RATE) / fps)
            a1 = round(Fraction((step + 1) * MIX_RATE) / fps)
            feed.wait_for(a1)  # a live feed: until the recording has gone that far (and the files with it)
            if feed.refresh():
                participants = _keep_order(feed.participants(), order)
                self._sync_sources(participants, audio_sources, video_sources, per_source, layout)
                presence, screen_presence = place(participants)
                order = [p.participant_id for p in participants]
            total = timeline.total_samples
            if a0 >= total:
                break
            a1 = min(total, a1)
            count = a1 - a0
            pieces = timeline.pieces(a0, a1)

            # Audio: each participant's tracks, summed, then placed on the output channels.
            voices: dict[str, Samples] = {}
            for pid, sources in audio_sources.items():
                voice: Samples | None = None
                for source in sources:
                    parts = [source.read(wall, n) for wall, n in pieces]
                    if all(p is None for p in parts):
                        continue
                    block = np.concatenate(
                        [
                            p if p is not None else np.zeros((per_source, n), np.float32)
                            for p, (_, n) in zip(parts, pieces, strict=True)
                        ],
                        axis=1,
                    )
                    voice = block if voice is None else voice + block
                if voice is not None:
                    voices[pid] = voice
            mix = np.zeros((n_channels, count), np.float32)
            for pid, voice in voices.items():
                if opts.channels == "stereo":
                    mix += voice
                elif opts.channels == "mono":
                    mix[0] += voice[0]
                elif pid in channel_of:
                    mix[channel_of[pid]] += voice[0]
            limiter.process(mix)
            for output in outputs:
                output.write_audio(mix)

            if canvas is not None:
                wall_ms = timeline.wall_ms(timeline.to_wall(min(total - 1, round(a0 + half_frame))))
                present = [pid for pid in order if any(s <= wall_ms < e for s, e in presence[pid])]
                screens = [pid for pid in order if any(s <= wall_ms < e for s, e in screen_presence[pid])]
                current = None
                if layout == "active_speaker":
                    levels = {pid: level_db(voices.get(pid)) for pid in present}
                    current = speaker.update(step / float(fps), count / MIX_RATE, levels)
                tiles = arrange(opts.width, opts.height, layout, present, screens, current)  # type: ignore[arg-type]
                frames = {}
                for tile in tiles:
                    vsource = video_sources.get(tile.source)
                    frames[tile.source] = vsource.frame_at(wall_ms) if vsource is not None else None
                picture = canvas.render(tiles, frames)
                outputs[0].write_video(picture)

            now = time.monotonic()
            if self._progress is not None and (now - last_report >= _PROGRESS_INTERVAL or a1 >= total):
                last_report = now
                self._report(a1, started)
            step += 1
        return participants


def compose(
    base_dir: Path,
    spans: Sequence[tuple[int, int]],
    options: ComposeOptions | None,
    out_path: Path,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> ComposeResult:
    """Render a meeting composite from its track files.

    Synchronous and CPU-bound: call it from a worker thread (``asyncio.to_thread``) or a job
    process, never on the event loop.

    Args:
        base_dir: The recording's root: ``{session_id}/{participant_id}/{kind}/`` folders with manifests.
        spans: Recorded (start_epoch_ms, end_epoch_ms) spans; paused time between them is cut out.
        options: Layout, format, channels, size; defaults to an MP4 grid.
        out_path: The file to write (atomically: temporary name, then rename).
        progress: Called with the fraction done and an ETA about twice a second.
        cancel: Set to stop the render; then `ComposeCancelled` is raised and nothing is left behind.

    Returns:
        Duration, size, streams and channel map of the file (and of the export file, if asked).

    Raises:
        ComposeCancelled: If cancelled.
        roomtape.errors.InvalidInput: If the spans or options are not valid.
    """
    return Composer(base_dir, spans, options, progress=progress, cancel=cancel).run(out_path)


def compose_live(
    feed: Feed,
    options: ComposeOptions | None,
    out_path: Path | None,
    *,
    progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
    sink: PacketSink | None = None,
) -> ComposeResult:
    """Render a meeting composite while it is recorded, from a live feed (the same renderer as `compose`).

    Returns once the feed is final (the recording stopped) and its last step is written. Synchronous and
    CPU-bound; ``roomtape.recording.live`` runs it in its own process.

    Args:
        feed: The recording followed as it is written (`roomtape.recording.compose.feed.LiveFeed`).
        options: What to render (`live_supported` must hold).
        out_path: The file to write (atomically: temporary name, then rename); None: no file (a livestream).
        progress: Called with the media time rendered about twice a second.
        cancel: Set to stop the render; then `ComposeCancelled` is raised and nothing is left behind.
        sink: The live stream outputs (`roomtape.livestream.outputs.StreamOutputs`), fed the same packets.

    Returns:
        What was written.
    """
    return Composer(Path(), (), options, progress=progress, cancel=cancel, feed=feed, sink=sink).run(out_path)


def _keep_order(found: list[Participant], order: list[str]) -> list[Participant]:
    """``found`` with the participants already laid out in their order, newcomers after them (by first media).

    A live render re-reads the manifests as it goes; a segment's start can still move a few ms when it is
    closed, so two participants who started together could swap places in ``discover``'s order, and their tiles
    with it, for the last seconds rendered after the stop (seen in the live sync test).
    """
    rank = {pid: i for i, pid in enumerate(order)}
    return sorted(found, key=lambda p: (rank.get(p.participant_id, len(rank)), p.first_ms, p.participant_id))
