"""The receive → disk path per publisher: where the event loop's CPU goes, and what each option changes.

N publishers in another process (``track_recording.sender_main``: pre-encoded 640x480 VP8 ≈1.5 Mbit/s 30 fps +
20 ms Opus, packed without encoding) send over loopback DTLS-SRTP to a receiver process that runs roomtape's
Room (tapped receivers, no decoding) and records every track (``track_recording.receiver_main``). Each variant
runs twice in its own receiver process: once unprofiled (total process CPU of all threads, the event loop's
thread CPU, RTP packets received, frames written) and once with cProfile on the event-loop thread (wall
clock, the idle wait in epoll left out), whose self-times are grouped into stages (socket/ICE, DTLS, SRTP, RTP parse,
NACK/RTCP, depacketize, tap, recorder hand-off, event loop). The stage split of the profile is applied to the
unprofiled run's loop CPU, per publisher.

Variants (the baseline is today's path, measured in the same run):

- ``baseline``: today's path on asyncio's default loop, as the benches and tests run: tapped frames delivered
  on the event loop (``tap.LoopDelivery``), video receivers' REMB rate counter in slices (``tap.SliceRateCounter``),
  REMBs sent at libwebrtc's pace (``tap.RembLimiter``).
- ``remb-every-update``: today's path but a REMB sent for every estimate aiortc makes (``tap.REMB_LIMIT`` off).
- ``before``: the path the first runs of this bench measured as their baseline: every tapped frame hops to
  aiortc's decoder thread and back (``tap.LOOP_DELIVERY`` off), aiortc's own ``RateCounter``
  (``tap.FAST_RATE_COUNTER`` off), a REMB per estimate (``tap.REMB_LIMIT`` off).
- ``thread-hop``: today's path with only the decoder-thread hop put back (what ``LoopDelivery`` alone saves).
- ``uvloop``: today's path on uvloop (``roomtape serve`` runs on it: uvicorn's ``loop="auto"`` picks uvloop,
  which ``uvicorn[standard]`` installs).
- ``uvloop-before``: the ``before`` path on uvloop (the combination whose media stopped in the first runs).
- ``batch``: today's path, with the datagram transport reading every queued datagram per readiness event instead
  of one (``recvfrom`` until ``EAGAIN``; the stdlib has no ``recvmmsg``).

Run: ``.venv/bin/python bench/receive_path.py [--publishers 32] [--seconds 10]``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import math
import multiprocessing as mp
import os
import platform
import pstats
import sys
import tempfile
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import track_recording as tr
from bench_peers import VIDEO_TIME_BASE

VARIANTS = ("baseline", "remb-every-update", "before", "thread-hop", "uvloop", "uvloop-before", "batch")
BATCH = 64  # datagrams read per readiness event at most


# ------------------------------------------------------------------------------------------------ stages
def _stage_rules() -> tuple[dict[tuple[str, int], str], list[tuple[str, str, str]]]:
    """(file, first line) of specific functions → stage, and (file part, function part, stage) fallbacks."""
    import aiortc.rtcrtpreceiver as rx
    import aiortc.rtp as rtp

    def at(func: Any) -> tuple[str, int]:
        code = func.__code__
        return code.co_filename, code.co_firstlineno

    exact = {
        at(rtp.RtpPacket.parse.__func__): "rtp_parse",
        at(rtp.unpack_header_extensions): "rtp_parse",
        at(rtp.RtcpPacket.parse.__func__): "nack_rtcp",
        at(rx.NackGenerator.add): "nack_rtcp",
        at(rx.StreamStatistics.add): "nack_rtcp",
        at(rx.RTCRtpReceiver._handle_rtcp_packet): "nack_rtcp",
        at(rx.RTCRtpReceiver._handle_rtp_packet): "aiortc_receiver_dispatch",
        at(rx.TimestampMapper.map): "tap",
    }
    fallbacks = [
        ("roomtape/recording/", "", "recorder_handoff"),
        ("roomtape/media/tap.py", "", "tap"),
        ("roomtape/media/", "", "roomtape_media_other"),
        ("aiortc/jitterbuffer.py", "", "tap"),  # video frame re-assembly before the tap
        ("queue.py", "", "tap"),  # the hop to aiortc's decoder thread: queue.Queue.put
        ("threading.py", "", "tap"),
        ("", "_thread.lock", "tap"),
        ("asyncio/queues.py", "", "queues"),  # frames back from the decoder thread, and ICE → DTLS
        ("pylibsrtp/", "", "srtp"),
        ("", "srtp", "srtp"),
        ("", "protect", "srtp"),
        ("aiortc/codecs/", "", "depacketize"),
        ("aiortc/rtp.py", "", "rtp_parse"),
        ("aiortc/rtcrtpparameters.py", "", "rtp_parse"),
        ("aiortc/rate.py", "", "nack_rtcp"),  # the receive-side bitrate estimator (REMB), fed per packet
        ("aiortc/rtcrtpreceiver.py", "", "nack_rtcp"),
        ("aiortc/rtcrtpsender.py", "", "nack_rtcp"),
        ("aiortc/rtcdtlstransport.py", "", "dtls_routing"),
        ("aiortc/clock.py", "", "dtls_routing"),
        ("aioice/", "", "socket_ice"),
        ("selector_events.py", "", "socket_ice"),
        ("selectors.py", "", "socket_ice"),
        ("", "recvfrom", "socket_ice"),
        ("", "sendto", "socket_ice"),
        ("", "epoll", "socket_ice"),
        ("", "uvloop", "socket_ice"),
    ]
    return exact, fallbacks


def stage_split(stats: pstats.Stats) -> dict[str, Any]:
    """Self-time (CPU) of the loop thread grouped by stage, as shares, plus the top functions of each stage."""
    exact, fallbacks = _stage_rules()
    totals: dict[str, float] = {}
    top: dict[str, list[tuple[float, str]]] = {}
    calls = {"rtp_packets_dispatched": 0}
    idle = 0.0
    for (filename, line, name), (_cc, nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "select.epoll" in name or "run_forever' of 'uvloop" in name:
            idle += tt  # waiting for the next event (uvloop: also libuv's own C work, which cProfile cannot see into)
            continue
        stage = exact.get((filename, line))
        if stage is None:
            stage = next((s for f, n, s in fallbacks if f in filename and n in name), "event_loop_other")
        if stage == "aiortc_receiver_dispatch":
            calls["rtp_packets_dispatched"] = nc
        totals[stage] = totals.get(stage, 0.0) + tt
        top.setdefault(stage, []).append((tt, f"{Path(filename).name}:{line}({name})"))
    whole = sum(totals.values()) or 1.0
    overall = sorted(((tt, n, s) for s, items in top.items() for tt, n in items), reverse=True)[:40]
    return {
        "top_functions_overall": [f"{t:.3f}s {s} {n}" for t, n, s in overall],
        "share": {k: round(v / whole, 4) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "profiled_loop_busy_seconds": round(whole, 3),
        "profiled_loop_idle_seconds": round(idle, 3),
        "top_functions": {
            k: [f"{t:.3f}s {n}" for t, n in sorted(v, reverse=True)[:4]] for k, v in top.items() if totals[k] > 0
        },
        **calls,
    }


# ------------------------------------------------------------------------------------------------ variants
def _batched_read_ready(self: Any) -> None:
    """``_SelectorDatagramTransport._read_ready`` reading up to ``BATCH`` datagrams per readiness event."""
    recv, size, protocol = self._sock.recvfrom, self.max_size, self._protocol
    for _ in range(BATCH):
        if self._conn_lost:
            return
        try:
            data, addr = recv(size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            protocol.error_received(exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
            return
        protocol.datagram_received(data, addr)


def apply_variant(variant: str) -> None:
    from roomtape.media import tap

    # The "before" variants put back what landed since the first runs: the decoder-thread hop, aiortc's counter.
    tap.FAST_RATE_COUNTER = variant not in ("before", "uvloop-before")
    tap.LOOP_DELIVERY = variant not in ("before", "thread-hop", "uvloop-before")
    tap.REMB_LIMIT = variant not in ("before", "uvloop-before", "remb-every-update")
    if variant.startswith("uvloop"):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    elif variant == "batch":
        from asyncio import selector_events

        selector_events._SelectorDatagramTransport._read_ready = _batched_read_ready  # type: ignore[attr-defined]


class _Conn:
    """Passes the receiver's messages through, adding this bench's counters to its result."""

    def __init__(self, conn: Connection, extra: dict[str, Any]) -> None:
        self._conn, self._extra = conn, extra

    def recv(self) -> Any:
        return self._conn.recv()

    def send(self, item: Any) -> None:
        if isinstance(item, dict) and "mode" in item:
            item.update(self._extra)
        self._conn.send(item)


def receiver_main(conn: Connection, variant: str, profiled: bool, seconds: float, workdir: str) -> None:
    """A track_recording receiver recording every track, with the variant applied and packets counted."""
    import aiortc.rtcdtlstransport as dtls
    import aiortc.rtcrtpreceiver as rtprx

    apply_variant(variant)
    packets = [0]
    rtcp_sent = [0]  # RTCP packets the receivers sent (reports, REMB, NACK, PLI)
    original_send_rtcp = rtprx.RTCRtpReceiver._send_rtcp

    async def counted_rtcp(self: Any, packet: Any) -> None:
        rtcp_sent[0] += 1
        await original_send_rtcp(self, packet)

    rtprx.RTCRtpReceiver._send_rtcp = counted_rtcp  # type: ignore[method-assign]
    # Counted at the DTLS transport's RTP router, after SRTP: the receiver's own method is checked by the tap.
    original = dtls.RTCDtlsTransport._handle_rtp_data

    async def counted(self: Any, *args: Any, **kwargs: Any) -> None:
        packets[0] += 1
        await original(self, *args, **kwargs)

    dtls.RTCDtlsTransport._handle_rtp_data = counted  # type: ignore[method-assign]
    extra: dict[str, Any] = {"variant": variant, "loop": ""}
    marks: list[tuple[int, int]] = []
    original_thread_cpu = tr.thread_cpu

    def marked_thread_cpu() -> dict[str, float]:  # called exactly at the window's start and end
        marks.append((packets[0], rtcp_sent[0]))
        extra["rtp_packets_in_window"] = marks[-1][0] - marks[0][0]
        extra["receiver_rtcp_sent_in_window"] = marks[-1][1] - marks[0][1]
        extra["loop"] = type(asyncio.get_running_loop()).__module__
        return original_thread_cpu()

    tr.thread_cpu = marked_thread_cpu
    profilers: list[cProfile.Profile] = []

    class CpuProfile(cProfile.Profile):
        def __init__(self) -> None:
            # Default (wall) timer: a CPU-clock timer costs a syscall per call and starved the loop (2-4 % of the
            # packets arrived in the first runs' profiled windows). The idle wait is left out in stage_split.
            super().__init__()
            profilers.append(self)

        def disable(self) -> None:
            super().disable()
            # The first one made is the event loop's (the others: writer threads); Stats() disables again.
            if self is profilers[0] and "stages" not in extra:
                extra["stages"] = {}
                extra["stages"] = stage_split(pstats.Stats(self))

    tr.cProfile.Profile = CpuProfile  # type: ignore[misc]
    tr.receiver_main(_Conn(conn, extra), "profile" if profiled else "record-av", seconds, workdir, 0)  # type: ignore[arg-type]


def run(variant: str, profiled: bool, publishers: int, seconds: float, media: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    s_parent, s_child = ctx.Pipe()
    r_parent, r_child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix=f"bench-rx-{variant}-") as workdir:
        sender = ctx.Process(target=tr.sender_main, args=(s_child, publishers, media))
        receiver = ctx.Process(target=receiver_main, args=(r_child, variant, profiled, seconds, workdir))
        sender.start()
        receiver.start()
        hello = s_parent.recv()
        r_parent.send(hello["offers"])
        s_parent.send(r_parent.recv())
        result: dict[str, Any] = r_parent.recv()
        s_parent.send("done")
        sender.join(30)
        receiver.join(30)
    result["load_average_after"] = round(os.getloadavg()[0], 2)
    keep = ("profile_top_tottime", "writer_threads_profile_top_tottime")
    result = {k: v for k, v in result.items() if k not in keep}
    print(f"{variant} {'profiled' if profiled else 'measured'}: {json.dumps(result)[:600]}", flush=True)
    return result


def nominal_packets_per_publisher_second(media: Any) -> float:
    """RTP packets one publisher sends per second at full rate: aiortc's own VP8 packetizer over the loop, + Opus."""
    import av
    from aiortc.codecs.vpx import Vp8Encoder

    video, _audio = media
    encoder = Vp8Encoder()
    per_loop = 0
    for i, (data, _key) in enumerate(video):
        packet = av.Packet(data)
        packet.pts, packet.time_base = i * 3000, VIDEO_TIME_BASE
        per_loop += len(encoder.pack(packet)[0])
    return per_loop / len(video) * tr.FPS + 50


def summarize(measured: dict[str, Any], profiled: dict[str, Any], n: int, nominal: float) -> dict[str, Any]:
    wall = measured["wall_seconds"]
    cpu = measured["cpu_seconds"]
    loop_cpu = measured["cpu_seconds_by_thread"]["event_loop"]
    packets = measured.get("rtp_packets_in_window") or 0
    per_packet = cpu / packets if packets else math.inf
    expected_frames = n * (tr.FPS + 50) * wall
    stages = profiled.get("stages", {})
    share = stages.get("share", {})
    return {
        "loop": measured.get("loop"),
        "process_cores": round(cpu / wall, 3),
        "process_cores_per_publisher": round(cpu / wall / n, 5),
        "event_loop_cores_per_publisher": round(loop_cpu / wall / n, 5),
        "cpu_seconds_by_thread": measured["cpu_seconds_by_thread"],
        "rtp_packets_per_second": round(packets / wall),
        "share_of_nominal_packets_received": round(packets / (n * nominal * wall), 3),
        "packets_per_second_per_core": round(1 / per_packet) if packets else 0,
        "us_per_packet_process": round(per_packet * 1e6, 2),
        "publishers_per_core_at_full_rate": round(1 / (per_packet * nominal), 1) if packets else 0,
        "frames_written_in_window": measured.get("frames_written_in_window"),
        "share_of_nominal_frames_written": round((measured.get("frames_written_in_window") or 0) / expected_frames, 3),
        "frames_written_per_rtp_packet": round((measured.get("frames_written_in_window") or 0) / max(1, packets), 3),
        "receiver_rtcp_sent_per_rtp_packet": round(
            (measured.get("receiver_rtcp_sent_in_window") or 0) / max(1, packets), 3
        ),
        "dropped_frames": measured.get("dropped_frames"),
        "event_loop_cores_per_publisher_by_stage": {k: round(v * loop_cpu / wall / n, 6) for k, v in share.items()},
        "event_loop_us_per_packet_by_stage": {
            k: round(v * loop_cpu / packets * 1e6, 2) for k, v in share.items() if packets
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishers", type=int, default=32, help="each sends one VP8 + one Opus track")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window of each unprofiled run")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "receive_path.json")
    args = parser.parse_args()
    load0 = os.getloadavg()
    media = (tr.encode_video(), tr.encode_audio())
    nominal = nominal_packets_per_publisher_second(media)
    n = args.publishers
    runs: dict[str, Any] = {}
    for variant in args.variants.split(","):
        runs[variant] = {
            "measured": run(variant, False, n, args.seconds, media),
            "profiled": run(variant, True, n, args.seconds / 2, media),
        }
    summary = {v: summarize(r["measured"], r["profiled"], n, nominal) for v, r in runs.items()}
    base = summary.get("baseline")
    if base:
        for s in summary.values():
            s["cpu_per_packet_vs_baseline"] = round(s["us_per_packet_process"] / base["us_per_packet_process"], 3)
    out = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "platform": f"{platform.platform()} {platform.processor()} cores={os.cpu_count()}",
        "python": sys.version.split()[0],
        "load_average": {"start": [round(x, 2) for x in load0], "end": [round(x, 2) for x in os.getloadavg()]},
        "load": f"{n} publishers x (640x480 VP8 30 fps + Opus 20 ms), pre-encoded, {args.seconds:.0f} s measured",
        "nominal_rtp_packets_per_publisher_second": round(nominal, 1),
        "summary": summary,
        "runs": runs,
    }
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
