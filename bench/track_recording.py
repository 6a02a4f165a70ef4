"""CPU cost of recording participant tracks: roomtape's passthrough recorder vs aiortc's MediaRecorder.

Three receiver modes, each in its own process, fed by the same cheap load generator in another process
(N publishers sending pre-encoded 640x480 VP8 ≈1.5 Mbit/s at 30 fps + 20 ms Opus, packed without encoding):

- ``forward``: roomtape's Room taps the tracks (no decoding) and records nothing: the cost of receiving.
- ``record``:  the same, plus the RecordingService recording every track (writer threads, WebM files).
- ``mediarecorder``: plain aiortc receivers (decode) and ``aiortc.contrib.media.MediaRecorder`` (re-encode to
  WebM): the baseline.

The receiver process reports its own CPU time (all threads) over a steady window. The recorder's cost per
track is ``(record - forward) / N``; the baseline's is ``(mediarecorder - forward) / N`` (receiving is the
same work for both). Run: ``.venv/bin/python bench/track_recording.py [--tracks 4] [--seconds 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import multiprocessing as mp
import os
import platform
import resource
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aioice.ice
import av
import numpy as np

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
    ctx = av.CodecContext.create("libopus", "w")
    ctx.sample_rate, ctx.layout, ctx.format = 48000, "stereo", "s16"
    ctx.time_base = fractions.Fraction(1, 48000)
    ctx.options = {"frame_duration": "20"}
    t = np.arange(960 * (count + 4)) / 48000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)
    out: list[bytes] = []
    for i in range(count + 4):
        chunk = tone[i * 960 : (i + 1) * 960]
        frame = av.AudioFrame.from_ndarray(np.stack([chunk, chunk]).T.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate, frame.pts = 48000, i * 960
        out += [bytes(p) for p in ctx.encode(frame)]
    return out[:count]


# ---------------------------------------------------------------------------------------------- sender
def sender_main(conn: Connection, tracks: int, media: tuple[list[tuple[bytes, bool]], list[bytes]]) -> None:
    asyncio.run(_sender(conn, tracks, media))


async def _sender(conn: Connection, tracks: int, media: tuple[list[tuple[bytes, bool]], list[bytes]]) -> None:
    from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    loopback()
    video, audio = media
    bitrate = sum(len(d) for d, _ in video) * 8 / (LOOP_FRAMES / FPS)

    class PacketTrack(MediaStreamTrack):
        def __init__(self, kind: str) -> None:
            super().__init__()
            self.kind = kind
            self._i = 0
            self._start: float | None = None

        async def recv(self) -> av.Packet:
            step = 1 / FPS if self.kind == "video" else 0.02
            if self._start is None:
                self._start = time.time()
            await asyncio.sleep(max(0.0, self._start + self._i * step - time.time()))
            if self.kind == "video":
                data, key = video[self._i % len(video)]
                packet = av.Packet(data)
                packet.pts, packet.time_base, packet.is_keyframe = self._i * 3000, fractions.Fraction(1, 90000), key
            else:
                packet = av.Packet(audio[self._i % len(audio)])
                packet.pts, packet.time_base = self._i * 960, fractions.Fraction(1, 48000)
            self._i += 1
            return packet

    pcs = []
    offers = []
    for _ in range(tracks):
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver(PacketTrack("video"), direction="sendonly")
        pc.addTransceiver(PacketTrack("audio"), direction="sendonly")
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
def receiver_main(conn: Connection, mode: str, seconds: float, workdir: str) -> None:
    asyncio.run(_receiver(conn, mode, seconds, Path(workdir)))


async def _receiver(conn: Connection, mode: str, seconds: float, workdir: Path) -> None:
    loopback()
    loop = asyncio.get_running_loop()
    offers = await loop.run_in_executor(None, conn.recv)
    result: dict[str, Any] = {"mode": mode}
    cleanup: list[Any] = []
    if mode == "mediarecorder":
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
        from aiortc.contrib.media import MediaRecorder

        answers = []
        recorders = []
        for i, offer in enumerate(offers):
            pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
            recorder = MediaRecorder(str(workdir / f"mr-{i}.webm"))
            pc.on("track", recorder.addTrack)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=offer, type="offer"))
            await pc.setLocalDescription(await pc.createAnswer())
            answers.append(pc.localDescription.sdp)
            await recorder.start()
            recorders.append(recorder)
            cleanup.append(pc)
        conn.send(answers)
    else:
        from sqlalchemy import select

        from roomtape.db.engine import create_engine, session_factory
        from roomtape.db.migrate import upgrade
        from roomtape.db.models import Account, App, Meeting, TrackFile
        from roomtape.media.plane import MediaPlane
        from roomtape.recording.service import RecordingService

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
            await db.commit()
        live = media.open(meeting.id, "bench-session", app.id)
        service = await RecordingService.open(media, sessions, workdir)
        answers = []
        for i, offer in enumerate(offers):
            live.room.join(f"p{i}")
            answers.append(await live.room.publish(f"p{i}", offer))
        conn.send(answers)
        if mode == "record":
            async with sessions() as db:
                rec = await service.start_meeting_tracks(
                    db, meeting=meeting, participant_ids=None, kinds=["audio", "video"]
                )
            result["recording_id"] = rec.id
    await asyncio.sleep(WARMUP)
    threads = [w._thread for w in service._workers] if mode == "record" else []

    def writer_cpu() -> float:
        return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident)) for t in threads if t.ident)

    cpu0, wall0, writers0 = time.process_time(), time.monotonic(), writer_cpu()
    await asyncio.sleep(seconds)
    cpu1, wall1, writers1 = time.process_time(), time.monotonic(), writer_cpu()
    result.update(cpu_seconds=cpu1 - cpu0, wall_seconds=wall1 - wall0, writer_thread_cpu_seconds=writers1 - writers0)
    result["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if mode == "mediarecorder":
        for recorder in recorders:
            await recorder.stop()
        for pc in cleanup:
            await pc.close()
        result["files_bytes"] = await asyncio.to_thread(
            lambda: sum(p.stat().st_size for p in workdir.glob("mr-*.webm"))
        )
    else:
        if mode == "record":
            await service.stop_recording(result["recording_id"], "API_CALL")
            async with sessions() as db:
                files = (await db.scalars(select(TrackFile))).all()
            result["frames_written"] = sum(f.frames for f in files)
            result["files_bytes"] = sum(f.size for f in files)
            result["files"] = len(files)
        await media.close_all()
        await service.aclose()
        await engine.dispose()
    conn.send(result)


def run_mode(mode: str, tracks: int, seconds: float, media: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    s_parent, s_child = ctx.Pipe()
    r_parent, r_child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as workdir:
        sender = ctx.Process(target=sender_main, args=(s_child, tracks, media))
        receiver = ctx.Process(target=receiver_main, args=(r_child, mode, seconds, workdir))
        sender.start()
        receiver.start()
        hello = s_parent.recv()
        r_parent.send(hello["offers"])
        s_parent.send(r_parent.recv())
        result: dict[str, Any] = r_parent.recv()
        s_parent.send("done")
        sender.join(30)
        receiver.join(30)
    result["tracks"] = tracks
    result["video_bitrate_bps"] = round(hello["video_bitrate"])
    result["cores"] = result["cpu_seconds"] / result["wall_seconds"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=4, help="publishers (each sends one VP8 + one Opus track)")
    parser.add_argument("--baseline-tracks", type=int, default=2, help="publishers for the MediaRecorder run")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "track_recording.json")
    args = parser.parse_args()

    media = (encode_video(), encode_audio())  # the same pre-encoded load for every run
    runs = {
        "forward": run_mode("forward", args.tracks, args.seconds, media),
        "record": run_mode("record", args.tracks, args.seconds, media),
        "forward_baseline_n": run_mode("forward", args.baseline_tracks, args.seconds, media),
        "mediarecorder": run_mode("mediarecorder", args.baseline_tracks, args.seconds, media),
    }
    n, nb = args.tracks, args.baseline_tracks
    recorder_per_publisher = (runs["record"]["cores"] - runs["forward"]["cores"]) / n
    mr_per_publisher = (runs["mediarecorder"]["cores"] - runs["forward_baseline_n"]["cores"]) / nb
    frames = runs["record"].get("frames_written", 0)
    writer_per_publisher = runs["record"]["writer_thread_cpu_seconds"] / runs["record"]["wall_seconds"] / n
    summary = {
        "writer_threads_cores_per_publisher_av": round(writer_per_publisher, 4),
        "writer_threads_us_per_frame": round(
            runs["record"]["writer_thread_cpu_seconds"]
            / (frames * runs["record"]["wall_seconds"] / (args.seconds + WARMUP))
            * 1e6,
            1,
        )
        if frames
        else None,
        "recorder_cores_per_publisher_av": round(recorder_per_publisher, 4),
        "mediarecorder_cores_per_publisher_av": round(mr_per_publisher, 4),
        "ratio_mediarecorder_over_recorder": round(mr_per_publisher / recorder_per_publisher, 1)
        if recorder_per_publisher > 0
        else None,
        "recorder_us_per_frame": round(
            (runs["record"]["cpu_seconds"] - runs["forward"]["cpu_seconds"]) / frames * 1e6, 1
        )
        if frames
        else None,
        "receive_cores_per_publisher_av": round(runs["forward"]["cores"] / n, 4),
        "recorded_publishers_per_core_estimate": round(1 / recorder_per_publisher)
        if recorder_per_publisher > 0
        else None,
    }
    out = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "platform": f"{platform.platform()} {platform.processor()} cores={os.cpu_count()}",
        "python": sys.version.split()[0],
        "load": f"{n} publishers x (640x480 VP8 30 fps + Opus 20 ms), pre-encoded, {args.seconds:.0f} s measured",
        "summary": summary,
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
