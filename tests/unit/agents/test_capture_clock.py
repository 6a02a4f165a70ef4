"""The Python client's sender reports use the capture clock: a frame's capture time comes from its timestamp,
and a frame handed out late (a busy event loop) does not move the clock."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time

import av
import pytest
from aiortc import RTCPeerConnection, RTCRtpSender
from aiortc.clock import current_ntp_time, datetime_from_ntp
from aiortc.mediastreams import MediaStreamTrack

from roomtape.agents.timing import use_capture_clock
from roomtape.agents.tracks import MuteGate


class Scripted(MediaStreamTrack):
    """Audio frames of 20 ms, each handed out after the given delay (seconds)."""

    kind = "audio"

    def __init__(self, delays: list[float]) -> None:
        super().__init__()
        self.delays = delays
        self.n = 0

    async def recv(self) -> av.AudioFrame:
        await asyncio.sleep(self.delays[self.n])
        frame = av.AudioFrame(format="s16", layout="mono", samples=960)
        frame.pts, frame.time_base, frame.sample_rate = self.n * 960, fractions.Fraction(1, 48000), 48000
        self.n += 1
        return frame


async def test_capture_time_follows_timestamps_not_late_hand_outs() -> None:
    gate = MuteGate(Scripted([0.0, 0.02, 0.02, 0.25, 0.0, 0.0]))
    start = time.time()
    times = []
    for _ in range(6):
        await gate.recv()
        assert gate.captured_at is not None
        times.append(gate.captured_at)
    # Frame 3 came 230 ms late and frames 4, 5 right after it: their capture times stay 20 ms apart.
    steps = [b - a for a, b in itertools.pairwise(times)]
    assert steps == pytest.approx([0.02] * 5, abs=1e-6)
    assert abs(times[0] - start) < 0.05


async def test_sender_reports_carry_the_capture_time() -> None:
    pc = RTCPeerConnection()
    gate = MuteGate(Scripted([0.0]))
    sender = pc.addTransceiver(gate, direction="sendonly").sender
    use_capture_clock(sender, gate)
    assert isinstance(sender, RTCRtpSender)
    sender._RTCRtpSender__ntp_timestamp = 0  # type: ignore[attr-defined]  # before any frame: kept as is
    assert sender._RTCRtpSender__ntp_timestamp == 0  # type: ignore[attr-defined]
    await gate.recv()
    assert gate.captured_at is not None
    # What aiortc stores after sending (the send time, here 0.3 s after capture) becomes the capture time.
    await asyncio.sleep(0.3)
    sender._RTCRtpSender__ntp_timestamp = current_ntp_time()  # type: ignore[attr-defined]
    reported = datetime_from_ntp(sender._RTCRtpSender__ntp_timestamp).timestamp()  # type: ignore[attr-defined]
    assert reported == pytest.approx(gate.captured_at, abs=1e-3)
    await pc.close()
