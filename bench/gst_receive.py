"""GStreamer webrtcbin as the receiver of aiortc publishers: CPU per RTP packet against roomtape's path.

Issue 18's "native packet path" option, bench-only: the same N publishers as ``receive_path.py`` (one
``track_recording.sender_main`` process) answered by a ``/usr/bin/python3`` process (PyGObject) with one
``webrtcbin`` per publisher in one pipeline, each track depayloaded and written to a Matroska file
(``rtpvp8depay`` / ``rtpopusdepay ! matroskamux ! filesink``). Reports the receiver's CPU (all threads) per RTP
packet over the window. Run ``receive_path.py --variants baseline,uvloop`` right after it for the comparison.

Needs Debian's ``python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-bad-1.0 gstreamer1.0-nice
gstreamer1.0-plugins-good gstreamer1.0-plugins-bad`` (bench-only; no test needs them).

Run: ``.venv/bin/python bench/gst_receive.py 32 10`` (publishers, seconds) → ``bench/results/gst_receive.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def receiver(seconds: float) -> None:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstWebRTC", "1.0")
    gi.require_version("GstSdp", "1.0")
    from gi.repository import Gst, GstSdp, GstWebRTC

    Gst.init(None)
    offers = json.loads(sys.stdin.readline())
    workdir = sys.argv[3]
    pipe = Gst.Pipeline.new("rx")
    counts = [0]
    bins = []
    candidates: list[list[str]] = [[] for _ in offers]

    def on_pad(wb: Any, pad: Any, index: int) -> None:
        caps = pad.get_current_caps().get_structure(0)
        enc = caps.get_string("encoding-name")
        depay = Gst.ElementFactory.make("rtpvp8depay" if enc == "VP8" else "rtpopusdepay")
        mux = Gst.ElementFactory.make("matroskamux")
        sink = Gst.ElementFactory.make("filesink")
        sink.set_property("location", f"{workdir}/{index}-{enc}.mkv")
        sink.set_property("async", False)
        for e in (depay, mux, sink):
            pipe.add(e)
            e.sync_state_with_parent()
        depay.link(mux)
        mux.link(sink)
        pad.link(depay.get_static_pad("sink"))

        def probe(_pad: Any, _info: Any) -> Any:
            counts[0] += 1
            return Gst.PadProbeReturn.OK

        pad.add_probe(Gst.PadProbeType.BUFFER, probe)

    for i, _ in enumerate(offers):
        wb = Gst.ElementFactory.make("webrtcbin", f"wb{i}")
        wb.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        pipe.add(wb)
        wb.connect("pad-added", on_pad, i)
        wb.connect("on-ice-candidate", lambda _wb, mline, cand, i=i: candidates[i].append((mline, cand)))
        bins.append(wb)
    pipe.set_state(Gst.State.PLAYING)
    answers = []
    for wb, offer in zip(bins, offers, strict=True):
        _, sdp = GstSdp.SDPMessage.new_from_text(offer)
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.OFFER, sdp)
        p = Gst.Promise.new()
        wb.emit("set-remote-description", desc, p)
        p.wait()
        reply = p.get_reply()
        if reply is not None and reply.has_field("error"):
            raise RuntimeError(f"set-remote-description: {reply.get_value('error')}")
        p = Gst.Promise.new()
        wb.emit("create-answer", None, p)
        p.wait()
        reply = p.get_reply()
        if reply is None or not reply.has_field("answer"):
            raise RuntimeError(f"create-answer: {reply and reply.to_string()}")
        answer = reply.get_value("answer")
        p = Gst.Promise.new()
        wb.emit("set-local-description", answer, p)
        p.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        wb.get_property("ice-gathering-state") != GstWebRTC.WebRTCICEGatheringState.COMPLETE for wb in bins
    ):
        time.sleep(0.05)
    for i, wb in enumerate(bins):
        text = wb.get_property("local-description").sdp.as_text()
        if "a=candidate" not in text:
            lines = text.split("\r\n")
            out, media = [], -1
            for line in lines:
                out.append(line)
                if line.startswith("m="):
                    media += 1
                    out += [f"a={c}" for m, c in candidates[i] if m == media]
            text = "\r\n".join(out)
        answers.append(text)
    print(json.dumps(answers), flush=True)
    time.sleep(6.0)  # warm-up
    c0, p0, t0 = counts[0], time.process_time(), time.monotonic()
    time.sleep(seconds)
    c1, p1, t1 = counts[0], time.process_time(), time.monotonic()
    for wb in bins:
        print(wb.get_property("ice-connection-state"), wb.get_property("connection-state"), file=sys.stderr)
    print(
        json.dumps(
            {
                "packets": c1 - c0,
                "cpu_s": p1 - p0,
                "wall_s": t1 - t0,
                "threads": os.listdir("/proc/self/task").__len__(),
            }
        ),
        flush=True,
    )
    pipe.set_state(Gst.State.NULL)


def sender_on_host(conn: Any, n: int, media: Any) -> None:
    """The track_recording sender, its ICE on the host's IPv4 address: libnice leaves loopback out."""
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import aioice.ice
    import track_recording as tr

    host = [a for a in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) if not a.startswith("127.")][:1]

    def on_host() -> None:
        aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: host

    tr.loopback = on_host
    tr.sender_main(conn, n, media)


def driver() -> None:
    import multiprocessing as mp
    import subprocess
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    import track_recording as tr

    check = 'import gi; gi.require_version("GstWebRTC", "1.0"); from gi.repository import GstWebRTC'
    if subprocess.run(["/usr/bin/python3", "-c", check], capture_output=True).returncode != 0:
        print("gst_receive: skipped, /usr/bin/python3 has no GStreamer webrtcbin (see the module docstring)")
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 32
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 10.0
    out_path = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).parent / "results" / "gst_receive.json"
    load0 = [round(x, 2) for x in os.getloadavg()]
    media = (tr.encode_video(), tr.encode_audio())
    ctx = mp.get_context("spawn")
    s_parent, s_child = ctx.Pipe()
    sender = ctx.Process(target=sender_on_host, args=(s_child, n, media))
    sender.start()
    hello = s_parent.recv()
    with tempfile.TemporaryDirectory(prefix="bench-gst-") as workdir:
        rx = subprocess.Popen(
            ["/usr/bin/python3", __file__, "--receiver", str(seconds), workdir],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        rx.stdin.write(json.dumps(hello["offers"]) + "\n")
        rx.stdin.flush()
        answers = json.loads(rx.stdout.readline())
        s_parent.send(answers)
        result = json.loads(rx.stdout.readline())
        rx.wait(30)
        sizes = {p.name: p.stat().st_size for p in Path(workdir).iterdir()}
    s_parent.send("done")
    sender.join(30)
    result["files"] = len(sizes)
    result["bytes"] = sum(sizes.values())
    result["us_per_packet"] = result["cpu_s"] / max(1, result["packets"]) * 1e6
    result["share_of_nominal"] = round(result["packets"] / (n * 214 * result["wall_s"]), 3)
    result["publishers_per_core_at_full_rate"] = round(1e6 / (result["us_per_packet"] * 214), 1)
    out = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "load_average": {"start": load0, "end": [round(x, 2) for x in os.getloadavg()]},
        "load": f"{n} aiortc publishers (track_recording.sender_main: VP8 640x480 ~1.5 Mbit/s + Opus) on the host's "
        "IPv4 address (libnice leaves loopback out), one webrtcbin per publisher in one pipeline, "
        "rtpvp8depay/rtpopusdepay ! matroskamux ! filesink per track",
        "receiver": "GStreamer 1.22 webrtcbin (Debian), driven from /usr/bin/python3 (PyGObject)",
        "notes": [
            "packets are counted by a Python pad probe on each webrtcbin src pad (one GIL take per packet): "
            "that cost is included in cpu_s",
            "cpu_s is the receiver process's CPU over the window, all threads",
        ],
        "result": result,
    }
    out_path.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--receiver":
        receiver(float(sys.argv[2]))
    else:
        driver()
