"""Recording participant tracks: roomtape's passthrough recorder vs aiortc's MediaRecorder, CPU, memory, latency.

Receiver modes, each in its own process, fed by the same cheap load generator in another process (N publishers
sending pre-encoded 640x480 VP8 ≈1.5 Mbit/s at 30 fps + 20 ms Opus, packed without encoding; a PLI makes the
video jump to the next keyframe of the loop, as an encoder would):

- ``forward``: roomtape's Room taps the tracks (no decoding) and records nothing: the cost of receiving.
- ``record-video`` / ``record-audio``: the same, plus the RecordingService recording every video (or every
  audio) track. The recorder's cost per track is ``(record - forward) / N``; memory per track is the growth of
  the receiver's RSS from just before the recording started to the end of the window, over N.
- ``mediarecorder``: plain aiortc receivers (decode) and ``aiortc.contrib.media.MediaRecorder`` (re-encode to
  WebM), with its own ``forward`` run at the same N: the baseline, per publisher (video + audio).
- ``memory``: records every track with ``tracemalloc`` on: Python heap held per recorded track.
- ``latency``: starts (``RecordingService.start_participant_track``, the operation behind the HTTP call) and
  stops one track recording at a time and polls the disk: time until the segment file exists with its header
  and first frame muxed, and until the first frame's cluster is written out.
- ``profile``: recording every track under cProfile (event-loop thread): the top entries go into the JSON.
- ``writer_replay`` (in the parent process, no network): the writer thread's work alone, frames replayed through
  ``TrackRecorder``: µs per VP8 and Opus frame, and a profile.

The recorder's own CPU is also attributed directly, besides the ``record - forward`` difference: the writer
threads' CPU clocks plus the event-loop time spent in the collector hand-off (``collector_cpu_seconds``).

Every process reports its own CPU time (all threads) over a steady window.
Run: ``.venv/bin/python bench/track_recording.py [--tracks 8] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import fractions
import io
import json
import multiprocessing as mp
import os
import platform
import pstats
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_peers import LoopTrack, _route_plis_to_loop_tracks, make_opus_packets

WIDTH, HEIGHT, FPS = 640, 480, 30
LOOP_FRAMES = 150  # 5 s of video, looped; frame 0 is a keyframe, so the loop restarts decodable
WARMUP = 4.0


def loopback() -> None:
    aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


def encode_video() -> list[tuple[bytes, bool]]:
    ctx = av.CodecContext.create("libvpx", "w")
    ctx.width, ctx.height, ctx.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.gop_size = 60
    ctx.bit_rate = 1_500_000
    ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    rng = np.random.default_rng(1)
    # Smooth, moving content (blocky noise scaled up 16x): about 1.5 Mbit/s from libvpx's realtime mode.
    small = rng.integers(0, 255, (HEIGHT * 2 // 16, WIDTH * 2 // 16, 3), dtype=np.uint8)
    texture = np.kron(small, np.ones((16, 16, 1), dtype=np.uint8))
    out: list[tuple[bytes, bool]] = []
    for i in range(LOOP_FRAMES):
        y, x = (i * 3) % HEIGHT, (i * 5) % WIDTH
        img = np.ascontiguousarray(texture[y : y + HEIGHT, x : x + WIDTH])
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        out += [(bytes(p), p.is_keyframe) for p in ctx.encode(frame)]
    out += [(bytes(p), p.is_keyframe) for p in ctx.encode(None)]
    return out[:LOOP_FRAMES]


def encode_audio(count: int = 250) -> list[bytes]:
    """20 ms Opus packets of a 440 Hz tone, encoded once (``bench_peers.make_opus_packets``)."""
    return make_opus_packets(count)


# ---------------------------------------------------------------------------------------------- sender
def sender_main(
    conn: Connection, tracks: int, media: tuple[list[tuple[bytes, bool]], list[bytes]], voice: bool = False
) -> None:
    asyncio.run(_sender(conn, tracks, media, voice))


async def _sender(
    conn: Connection, tracks: int, media: tuple[list[tuple[bytes, bool]], list[bytes]], voice: bool
) -> None:
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    loopback()
    _route_plis_to_loop_tracks()
    video, audio = media
    bitrate = sum(len(d) for d, _ in video) * 8 / (LOOP_FRAMES / FPS)

    class AudioTrack(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self._i = 0
            self._start: float | None = None

        async def recv(self) -> av.Packet:
            if self._start is None:
                self._start = time.time()
            await asyncio.sleep(max(0.0, self._start + self._i * 0.02 - time.time()))
            packet = av.Packet(audio[self._i % len(audio)])
            packet.pts, packet.time_base = self._i * 960, fractions.Fraction(1, 48000)
            self._i += 1
            return packet

    pcs = []
    offers = []
    for _ in range(tracks):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        if not voice:  # voice: a voice session's publishers, microphone only
            pc.addTransceiver(LoopTrack(video), direction="sendonly")
        pc.addTransceiver(AudioTrack(), direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        offers.append(pc.localDescription.sdp)
        pcs.append(pc)
    conn.send({"offers": offers, "video_bitrate": bitrate})
    answers = await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    for pc, answer in zip(pcs, answers, strict=True):
        await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # "done"
    for pc in pcs:
        await pc.close()


# -------------------------------------------------------------------------------------------- receiver
def receiver_main(conn: Connection, mode: str, seconds: float, workdir: str, samples: int) -> None:
    asyncio.run(_receiver(conn, mode, seconds, Path(workdir), samples))


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def thread_cpu() -> dict[str, float]:
    """CPU seconds used so far by this process's threads, grouped: event loop, writer threads, aiortc's
    per-receiver decoder threads (the tap's frame hop), and the rest."""
    groups = {"event_loop": 0.0, "writer_threads": 0.0, "aiortc_decoder_threads": 0.0, "other_threads": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        name = names.get(int(tid), "")
        if int(tid) == main:
            group = "event_loop"
        elif name.startswith("roomtape-writer"):
            group = "writer_threads"
        elif name.endswith("-decoder"):
            group = "aiortc_decoder_threads"
        else:
            group = "other_threads"
        groups[group] += seconds
    return groups


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _mediarecorder(conn: Connection, offers: list[str], seconds: float, workdir: Path) -> dict[str, Any]:
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.contrib.media import MediaRecorder

    answers, recorders, pcs = [], [], []
    for i, offer in enumerate(offers):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        recorder = MediaRecorder(str(workdir / f"mr-{i}.webm"))
        pc.on("track", recorder.addTrack)
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
        answers.append(pc.localDescription.sdp)
        await recorder.start()
        recorders.append(recorder)
        pcs.append(pc)
    all0 = time.process_time(), time.monotonic()
    conn.send(answers)
    await asyncio.sleep(WARMUP)
    cpu0, wall0 = time.process_time(), time.monotonic()
    await asyncio.sleep(seconds)
    result: dict[str, Any] = {"cpu_seconds": time.process_time() - cpu0, "wall_seconds": time.monotonic() - wall0}
    for recorder in recorders:
        await recorder.stop()
    # Over the recorders' whole life: how much media they really got through. On a busy machine MediaRecorder
    # falls behind real time (decoded frames queue up unbounded), so its CPU/s alone understates its cost.
    result["cpu_seconds_total"] = time.process_time() - all0[0]
    result["wall_seconds_total"] = time.monotonic() - all0[1]
    for pc in pcs:
        await pc.close()

    def count() -> dict[str, int]:
        frames = {"video": 0, "audio": 0, "bytes": 0}
        for path in workdir.glob("mr-*.webm"):
            frames["bytes"] += path.stat().st_size
            with av.open(str(path)) as container:
                for packet in container.demux():
                    if packet.size:
                        frames[packet.stream.type] += 1
        return frames

    counted = await asyncio.to_thread(count)
    result["files_bytes"] = counted.pop("bytes")
    result["frames_written"] = counted
    result["video_frames_expected"] = round(len(offers) * FPS * result["wall_seconds_total"])
    return result


async def _receiver(conn: Connection, mode: str, seconds: float, workdir: Path, samples: int) -> None:
    loopback()
    loop = asyncio.get_running_loop()
    offers = await loop.run_in_executor(None, conn.recv)
    result: dict[str, Any] = {"mode": mode}
    if mode == "mediarecorder":
        result.update(await _mediarecorder(conn, offers, seconds, workdir))
        conn.send(result)
        return

    from sqlalchemy import select

    from roomtape.db.engine import create_engine, session_factory
    from roomtape.db.migrate import upgrade
    from roomtape.db.models import Account, App, Meeting, Participant, TrackFile
    from roomtape.media.plane import MediaPlane
    from roomtape.recording import service as service_module
    from roomtape.recording.finalize import recording_dir
    from roomtape.recording.service import RecordingService

    # Attribute the recorder's event-loop work directly: time every collector hand-off (per track per tick,
    # and the flushes on mute/unmute/stop) on the loop thread's CPU clock.
    collect_cpu = [0.0]
    original_collect = service_module._TrackTarget.collect

    def timed_collect(self: Any, muted: bool) -> None:
        t0 = time.thread_time()
        original_collect(self, muted)
        collect_cpu[0] += time.thread_time() - t0

    service_module._TrackTarget.collect = timed_collect  # type: ignore[method-assign]

    engine = create_engine(f"sqlite+aiosqlite:///{workdir / 'bench.db'}")
    await upgrade(engine)
    sessions = session_factory(engine)
    media = MediaPlane()
    async with sessions() as db:
        account = Account()
        db.add(account)
        await db.flush()
        app = App(account_id=account.id, name="bench")
        db.add(app)
        await db.flush()
        meeting = Meeting(app_id=app.id)
        db.add(meeting)
        await db.flush()
        participants = [
            Participant(meeting_id=meeting.id, custom_participant_id=f"p{i}", preset_name="host")
            for i in range(len(offers))
        ]
        db.add_all(participants)
        await db.commit()
    live = media.open(meeting.id, "bench-session", app.id)
    service = await RecordingService.open(media, sessions, workdir)
    answers = []
    for participant, offer in zip(participants, offers, strict=True):
        live.room.join(participant.id)
        answers.append(await live.room.publish(participant.id, offer))
    conn.send(answers)
    await asyncio.sleep(WARMUP)

    if mode == "latency":
        result.update(await _latency(service, sessions, meeting, participants, workdir, samples, recording_dir))
    else:
        kinds = {"record-video": ["video"], "record-audio": ["audio"], "profile-audio": ["audio"]}.get(
            mode, ["audio", "video"]
        )
        recording_ids = []
        if mode != "forward":
            # One track first, so that code paths, imports and thread arenas are warm: the memory figure is
            # what each further track adds.
            async with sessions() as db:
                first, _ = await service.start_participant_track(
                    db,
                    meeting=meeting,
                    participant=participants[0],
                    kind=kinds[0],
                    webhook_url=None,
                    bucket_dir_path=None,
                )
            recording_ids.append(first.id)
            await asyncio.sleep(1.0)
        rss0 = rss_mb()
        if mode == "memory":
            tracemalloc.start()
        traced0 = tracemalloc.get_traced_memory()[0] if mode == "memory" else 0
        if mode != "forward":
            others = [p.id for p in participants[1:]]
            async with sessions() as db:
                rec = await service.start_meeting_tracks(db, meeting=meeting, participant_ids=others, kinds=kinds)
            recording_ids.append(rec.id)
            # The first recording only holds kinds[0] of participant 0: add its other kinds to this one.
            if len(kinds) > 1:
                async with sessions() as db:
                    for kind in kinds[1:]:
                        extra, _ = await service.start_participant_track(
                            db,
                            meeting=meeting,
                            participant=participants[0],
                            kind=kind,
                            webhook_url=None,
                            bucket_dir_path=None,
                        )
                        recording_ids.append(extra.id)
            await asyncio.sleep(WARMUP / 2)
        threads = [w._thread for w in service._workers]

        def writer_cpu() -> float:
            return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident)) for t in threads if t.ident)

        profiler = cProfile.Profile() if mode.startswith("profile") else None
        # cProfile follows one thread: the writer threads get their own profiler, enabled from inside them.
        writer_profilers = [cProfile.Profile() for _ in service._workers] if profiler is not None else []
        for worker, wp in zip(service._workers, writer_profilers, strict=False):
            await worker.call(wp.enable)
        cpu0, wall0, writers0, threads0 = time.process_time(), time.monotonic(), writer_cpu(), thread_cpu()
        collect0 = collect_cpu[0]
        handled0 = sum(w._written for w in service._workers)  # frames the writer threads processed
        if profiler is not None:
            profiler.enable()
        await asyncio.sleep(seconds)
        if profiler is not None:
            profiler.disable()
        for worker, wp in zip(service._workers, writer_profilers, strict=False):
            await worker.call(wp.disable)
        cpu1, wall1, writers1, threads1 = time.process_time(), time.monotonic(), writer_cpu(), thread_cpu()
        result["cpu_seconds_by_thread"] = {k: round(threads1[k] - threads0[k], 2) for k in threads0}
        result["collector_cpu_seconds"] = collect_cpu[0] - collect0
        result["frames_written_in_window"] = sum(w._written for w in service._workers) - handled0
        result.update(
            cpu_seconds=cpu1 - cpu0, wall_seconds=wall1 - wall0, writer_thread_cpu_seconds=writers1 - writers0
        )
        result["rss_mb_before_recording"] = round(rss0, 1)
        result["rss_mb_end"] = round(rss_mb(), 1)
        if mode == "memory":
            result["tracemalloc_mb"] = round((tracemalloc.get_traced_memory()[0] - traced0) / 2**20, 2)
            tracemalloc.stop()
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(15)
            result["profile_top_tottime"] = [line for line in out.getvalue().splitlines() if line.strip()][:25]
            out = io.StringIO()
            stats = pstats.Stats(writer_profilers[0], stream=out)
            for wp in writer_profilers[1:]:
                stats.add(wp)
            stats.sort_stats("tottime").print_stats(15)
            result["writer_threads_profile_top_tottime"] = [
                line for line in out.getvalue().splitlines() if line.strip()
            ][:25]
        if recording_ids:
            result["recorded_tracks"] = len(offers) * len(kinds)
            result["tracks_measured_for_memory"] = len(offers) * len(kinds) - 1
            result["dropped_frames"] = sum(service.dropped_frames(r) for r in recording_ids)
            for recording_id in recording_ids:
                await service.stop_recording(recording_id, "API_CALL")
            async with sessions() as db:
                files = (await db.scalars(select(TrackFile))).all()
            result["frames_written"] = sum(f.frames for f in files)
            result["files_bytes"] = sum(f.size for f in files)
            result["files"] = len(files)
    await media.close_all()
    await service.aclose()
    await engine.dispose()
    conn.send(result)


def webm_size(directory: Path) -> int:
    """Size of the largest segment file in ``directory`` (0 while there is none)."""
    try:
        return max((e.stat().st_size for e in os.scandir(directory) if e.name.endswith(".webm")), default=0)
    except FileNotFoundError:
        return 0


async def _latency(
    service: Any, sessions: Any, meeting: Any, participants: list[Any], workdir: Path, samples: int, rdir: Any
) -> dict[str, Any]:
    """Start one track recording at a time; poll its directory for the first segment file."""
    out: dict[str, Any] = {}
    for kind in ("audio", "video"):
        muxed: list[float] = []
        durable: list[float] = []
        for i in range(samples):
            participant = participants[i % len(participants)]
            t0 = time.perf_counter()
            async with sessions() as db:
                rec, _ = await service.start_participant_track(
                    db, meeting=meeting, participant=participant, kind=kind, webhook_url=None, bucket_dir_path=None
                )
            directory = rdir(workdir, rec.id) / "bench-session" / participant.id / kind
            t_muxed = header = None
            deadline = t0 + 10
            while time.perf_counter() < deadline:
                size = webm_size(directory)
                if size and t_muxed is None:
                    t_muxed, header = time.perf_counter(), size  # header + first frame in the open cluster
                if header is not None and size > header:
                    durable.append(time.perf_counter() - t0)  # the first cluster is in the file
                    break
                await asyncio.sleep(0.002)
            if t_muxed is not None:
                muxed.append(t_muxed - t0)
            await service.stop_recording(rec.id, "API_CALL")
        out[kind] = {
            "samples": len(muxed),
            "first_frame_in_file_ms": {
                "p50": round(statistics.median(muxed) * 1000, 1),
                "p99": round(percentile(muxed, 99) * 1000, 1),
                "max": round(max(muxed) * 1000, 1),
            },
            "first_cluster_on_disk_ms": {
                "p50": round(statistics.median(durable) * 1000, 1),
                "p99": round(percentile(durable, 99) * 1000, 1),
            },
        }
    return out


def writer_replay(media: tuple[list[tuple[bytes, bool]], list[bytes]], frames: int = 3000) -> dict[str, Any]:
    """The writer thread's work alone: replay frames through ``TrackRecorder`` in this process (no network).

    Returns µs of CPU per frame for VP8 and Opus, and for VP8 the top cProfile entries.
    """
    from roomtape.media.frame import EncodedFrame as MediaFrame
    from roomtape.recording.segmenter import TrackRecorder
    from roomtape.recording.service import to_recording_frame

    video, audio = media
    t = time.time()
    streams = {
        "vp8": [
            MediaFrame(d, i * 3000, fractions.Fraction(1, 90000), (i * 3000) % 2**32, k, "video/vp8", t + i / FPS)
            for i, (d, k) in enumerate((video * (frames // len(video) + 1))[:frames])
        ],
        "opus": [
            MediaFrame(d, i * 960, fractions.Fraction(1, 48000), (i * 960) % 2**32, True, "audio/opus", t + i * 0.02)
            for i, d in enumerate((audio * (frames // len(audio) + 1))[:frames])
        ],
    }
    out: dict[str, Any] = {}
    for codec, items in streams.items():
        kind = "video" if codec == "vp8" else "audio"
        for profiled in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-writer-") as workdir:
                recorder = TrackRecorder(Path(workdir), "s", "p", kind)
                profiler = cProfile.Profile() if profiled else None
                t0 = time.thread_time()
                if profiler is not None:
                    profiler.enable()
                for frame in items:
                    recorder.write(to_recording_frame(frame, codec))  # type: ignore[arg-type]
                if profiler is not None:
                    profiler.disable()
                elapsed = time.thread_time() - t0
                recorder.close()
            if profiler is None:
                out[f"{codec}_us_per_frame"] = round(elapsed / frames * 1e6, 1)
            elif codec == "vp8":
                text = io.StringIO()
                pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(8)
                out["vp8_profile_top_tottime"] = [line for line in text.getvalue().splitlines() if line.strip()][3:13]
    return out


def mediarecorder_replay(media: tuple[list[tuple[bytes, bool]], list[bytes]], seconds: float = 3.0) -> dict[str, Any]:
    """The baseline's work alone, no network: aiortc's decoders, then ``MediaRecorder`` re-encoding to WebM.

    ``seconds`` of the same VP8 and Opus frames go through ``aiortc.codecs`` decoders (what an aiortc receiver
    runs) and a real ``MediaRecorder`` fed by a track that hands the decoded frames over as fast as it takes
    them. Returns CPU µs per video and audio frame (decode + encode + mux).
    """
    from aiortc import MediaStreamTrack
    from aiortc.codecs import get_decoder
    from aiortc.contrib.media import MediaRecorder
    from aiortc.jitterbuffer import JitterFrame
    from aiortc.mediastreams import MediaStreamError
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    video, audio = media
    nv, na = round(seconds * FPS), round(seconds * 50)
    vdec = get_decoder(RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=96))
    adec = get_decoder(RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111))
    t0 = time.process_time()
    vframes = [f for i, (d, _) in enumerate(video[:nv]) for f in vdec.decode(JitterFrame(d, i * 3000))]
    t1 = time.process_time()
    aframes = [f for i, d in enumerate((audio * 2)[:na]) for f in adec.decode(JitterFrame(d, i * 960))]
    t2 = time.process_time()

    class ListTrack(MediaStreamTrack):
        def __init__(self, kind: str, frames: list[Any]) -> None:
            super().__init__()
            self.kind = kind
            self._frames = list(frames)
            self.drained = asyncio.Event()

        async def recv(self) -> Any:
            if not self._frames:
                self.drained.set()
                raise MediaStreamError
            await asyncio.sleep(0)
            return self._frames.pop(0)

    async def record(kind: str, frames: list[Any], path: Path) -> float:
        recorder = MediaRecorder(str(path))
        track = ListTrack(kind, frames)
        recorder.addTrack(track)
        c0 = time.process_time()
        await recorder.start()
        await track.drained.wait()
        await asyncio.sleep(0.05)
        await recorder.stop()
        return time.process_time() - c0

    with tempfile.TemporaryDirectory(prefix="bench-mr-replay-") as workdir:
        encode_video_s = asyncio.run(record("video", vframes, Path(workdir) / "v.webm"))
        encode_audio_s = asyncio.run(record("audio", aframes, Path(workdir) / "a.webm"))
    return {
        "video_frames": len(vframes),
        "audio_frames": len(aframes),
        "vp8_decode_us_per_frame": round((t1 - t0) / len(vframes) * 1e6, 1),
        "vp8_encode_mux_us_per_frame": round(encode_video_s / len(vframes) * 1e6, 1),
        "opus_decode_us_per_frame": round((t2 - t1) / len(aframes) * 1e6, 1),
        "opus_encode_mux_us_per_frame": round(encode_audio_s / len(aframes) * 1e6, 1),
    }


def run_mode(
    mode: str, tracks: int, seconds: float, media: Any, samples: int = 0, voice: bool = False
) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    s_parent, s_child = ctx.Pipe()
    r_parent, r_child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as workdir:
        sender = ctx.Process(target=sender_main, args=(s_child, tracks, media, voice))
        receiver = ctx.Process(target=receiver_main, args=(r_child, mode, seconds, workdir, samples))
        sender.start()
        receiver.start()
        hello = s_parent.recv()
        r_parent.send(hello["offers"])
        s_parent.send(r_parent.recv())
        result: dict[str, Any] = r_parent.recv()
        s_parent.send("done")
        sender.join(30)
        receiver.join(30)
    result["publishers"] = tracks
    result["publishers_send"] = "Opus only" if voice else "VP8 + Opus"
    result["video_bitrate_bps"] = round(hello["video_bitrate"])
    if "cpu_seconds" in result:
        result["cores"] = result["cpu_seconds"] / result["wall_seconds"]
    print(f"{mode}: {json.dumps(result, indent=1)}", flush=True)
    return result


def replay_ratio(runs: dict[str, Any]) -> float:
    """Both recorders' own work per second of one publisher (30 VP8 + 50 Opus frames), no network: baseline/ours."""
    w, m = runs["writer_replay"], runs["mediarecorder_replay"]
    ours = FPS * w["vp8_us_per_frame"] + 50 * w["opus_us_per_frame"]
    theirs = FPS * (m["vp8_decode_us_per_frame"] + m["vp8_encode_mux_us_per_frame"]) + 50 * (
        m["opus_decode_us_per_frame"] + m["opus_encode_mux_us_per_frame"]
    )
    return round(theirs / ours, 1)


def direct_cost(run: dict[str, Any], n: int, fps: int) -> dict[str, Any]:
    """The recorder's own CPU, attributed directly: writer threads + the loop's collector hand-off.

    ``tracks_per_core`` assumes every track delivered its full rate over the window; on an overloaded machine
    the receiver gets fewer frames than were sent, so ``tracks_per_core_per_written_frame`` (CPU per frame that
    reached a file, times the frame rate) is the figure that does not flatter: both are given.
    """
    cpu = run["writer_thread_cpu_seconds"] + run["collector_cpu_seconds"]
    cores = cpu / run["wall_seconds"] / n
    expected = n * fps * run["wall_seconds"]
    written = run.get("frames_written_in_window") or 0
    per_frame = cpu / written if written else None
    return {
        "cores_per_track": round(cores, 5),
        "tracks_per_core": round(1 / cores) if cores > 0 else None,
        "us_per_frame": round(cpu / expected * 1e6, 1),
        "frames_written_in_window": written,
        "share_of_frames_expected": round(written / expected, 3) if written else None,
        "us_per_written_frame": round(per_frame * 1e6, 1) if per_frame else None,
        "tracks_per_core_per_written_frame": round(1 / (per_frame * fps)) if per_frame else None,
        "writer_threads_cpu_seconds": round(run["writer_thread_cpu_seconds"], 3),
        "collector_cpu_seconds": round(run["collector_cpu_seconds"], 3),
    }


def summarize(runs: dict[str, Any], n: int, nb: int) -> dict[str, Any]:
    """The headline figures, from the runs (see the module docstring for what each run does)."""

    video, audio = direct_cost(runs["record_video"], n, FPS), direct_cost(runs["record_audio"], n, 50)
    ours = video["cores_per_track"] + audio["cores_per_track"]
    mr_run, fwd_nb = runs["mediarecorder"], runs["forward_baseline_n"]["cores"]
    # MediaRecorder lags behind real time when it lacks CPU (decoded frames queue up, nothing is dropped), so
    # its CPU/s alone understates its cost: scale by the share of the video it actually got through.
    coverage = mr_run["frames_written"]["video"] / max(1, mr_run["video_frames_expected"])
    mr_measured = (mr_run["cores"] - fwd_nb) / nb
    mr_real_time = (mr_run["cpu_seconds_total"] / mr_run["wall_seconds_total"] - fwd_nb) / max(coverage, 1e-9) / nb
    fwd = runs["forward"]["cores"]
    mem = runs["memory"]
    return {
        "recorder_video": video,
        "recorder_audio": audio,
        "writer_replay_us_per_frame": {
            "vp8": runs["writer_replay"]["vp8_us_per_frame"],
            "opus": runs["writer_replay"]["opus_us_per_frame"],
        },
        "mediarecorder": {
            "measured_cores_per_publisher_av": round(mr_measured, 4),
            "share_of_video_recorded": round(coverage, 3),
            "cores_per_publisher_av_at_real_time": round(mr_real_time, 3),
            "replay_us_per_frame": {
                "vp8_decode": runs["mediarecorder_replay"]["vp8_decode_us_per_frame"],
                "vp8_encode_mux": runs["mediarecorder_replay"]["vp8_encode_mux_us_per_frame"],
                "opus_decode": runs["mediarecorder_replay"]["opus_decode_us_per_frame"],
                "opus_encode_mux": runs["mediarecorder_replay"]["opus_encode_mux_us_per_frame"],
            },
        },
        "ratio_mediarecorder_over_recorder": {
            "replay_per_publisher_second": replay_ratio(runs),
            "live_measured": round(mr_measured / ours, 1) if ours > 0 else None,
            "live_at_real_time": round(mr_real_time / ours, 1) if ours > 0 else None,
        },
        "end_to_end_difference": {
            "note": "(record - forward) / N between two processes; meaningless when the machine is overloaded",
            "cores_per_video_track": round((runs["record_video"]["cores"] - fwd) / n, 5),
            "cores_per_audio_track": round((runs["record_audio"]["cores"] - fwd) / n, 5),
        },
        "receive_cores_per_publisher_av": round(fwd / n, 4),
        "rss_mb_per_track": {
            "video": round(
                (runs["record_video"]["rss_mb_end"] - runs["record_video"]["rss_mb_before_recording"])
                / runs["record_video"]["tracks_measured_for_memory"],
                3,
            ),
            "audio": round(
                (runs["record_audio"]["rss_mb_end"] - runs["record_audio"]["rss_mb_before_recording"])
                / runs["record_audio"]["tracks_measured_for_memory"],
                3,
            ),
            "audio_and_video_memory_run": round(
                (mem["rss_mb_end"] - mem["rss_mb_before_recording"]) / mem["tracks_measured_for_memory"], 3
            ),
        },
        "tracemalloc_mb_per_track": round(mem["tracemalloc_mb"] / mem["tracks_measured_for_memory"], 3),
        "latency_ms": {"audio": runs["latency"]["audio"], "video": runs["latency"]["video"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8, help="publishers (each sends one VP8 + one Opus track)")
    parser.add_argument("--baseline-tracks", type=int, default=2, help="publishers for the MediaRecorder run")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--latency-samples", type=int, default=20, help="starts per kind in the latency run")
    parser.add_argument("--only", help="comma-separated modes to run, printed only (no results file)")
    parser.add_argument("--out", type=Path, default=None, help="results file (default results/track_recording.json)")
    parser.add_argument(
        "--voice",
        action="store_true",
        help="publishers send only Opus: record-audio and profile-audio at --tracks, into results/"
        "track_recording_voice.json (with video as well the load generator cannot keep up at N >= 32 here)",
    )
    args = parser.parse_args()
    results = Path(__file__).parent / "results"
    load0 = os.getloadavg()[0]

    media = (encode_video(), encode_audio())  # the same pre-encoded load for every run
    n, nb = args.tracks, args.baseline_tracks
    if args.only:
        only = {
            m: run_mode(m, n, args.seconds, media, samples=args.latency_samples, voice=args.voice)
            for m in args.only.split(",")
        }
        if args.out is not None:  # written only when asked for
            rates = {"record-video": FPS, "record-audio": 50}
            args.out.write_text(
                json.dumps(
                    {
                        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
                        "uptime_at_end": os.popen("uptime").read().strip(),
                        "load_average": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
                        "summary": {m: direct_cost(r, n, rates[m]) for m, r in only.items() if m in rates},
                        "runs": only,
                    },
                    indent=2,
                )
                + "\n"
            )
        return
    if args.voice:
        voice_runs = {
            "record_audio": run_mode("record-audio", n, args.seconds, media, voice=True),
            "profile_audio": run_mode("profile-audio", n, args.seconds / 2, media, voice=True),
            "writer_replay": writer_replay(media),
        }
        voice_out = {
            "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
            "platform": f"{platform.platform()} {platform.processor()} cores={os.cpu_count()}",
            "load_average": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
            "uptime_at_end": os.popen("uptime").read().strip(),
            "load": f"{n} publishers x Opus 20 ms (no video), {args.seconds:.0f} s measured",
            "summary": {"recorder_audio": direct_cost(voice_runs["record_audio"], n, 50)},
            "runs": voice_runs,
        }
        path = args.out or results / "track_recording_voice.json"
        path.write_text(json.dumps(voice_out, indent=2) + "\n")
        print(json.dumps(voice_out["summary"], indent=2))
        return
    runs = {
        "forward": run_mode("forward", n, args.seconds, media),
        "record_video": run_mode("record-video", n, args.seconds, media),
        "record_audio": run_mode("record-audio", n, args.seconds, media),
        "forward_baseline_n": run_mode("forward", nb, args.seconds, media),
        "mediarecorder": run_mode("mediarecorder", nb, args.seconds, media),
        "memory": run_mode("memory", n, args.seconds / 2, media),
        "latency": run_mode("latency", n, 0, media, samples=args.latency_samples),
        "profile": run_mode("profile", n, args.seconds / 2, media),
    }
    runs["writer_replay"] = writer_replay(media)
    runs["mediarecorder_replay"] = mediarecorder_replay(media)
    summary = summarize(runs, n, nb)
    out = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "platform": f"{platform.platform()} {platform.processor()} cores={os.cpu_count()}",
        "python": sys.version.split()[0],
        "load_average": {"start": round(load0, 2), "end": round(os.getloadavg()[0], 2)},
        "load": f"{n} publishers x (640x480 VP8 30 fps + Opus 20 ms), pre-encoded, {args.seconds:.0f} s measured",
        "summary": summary,
        "runs": runs,
    }
    path = args.out or results / "track_recording.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["summary"], indent=2))


if __name__ == "__main__":
    main()
