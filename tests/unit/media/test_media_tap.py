"""The tap against aiortc's real receiver and sender objects (no network), and its self-check."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiortc
import av
import pytest
from aiortc import (
    RTCCertificate,
    RTCDtlsTransport,
    RTCIceGatherer,
    RTCIceTransport,
    RTCRtpReceiver,
    RTCRtpSender,
    rtcrtpreceiver,
)
from aiortc.codecs.vpx import Vp8Encoder
from aiortc.mediastreams import MediaStreamError
from aiortc.rtcrtpparameters import RTCRtpCodecParameters, RTCRtpDecodingParameters, RTCRtpReceiveParameters
from aiortc.rtcrtpreceiver import RemoteStreamTrack
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtcpSenderInfo, RtcpSrPacket, RtpPacket
from tests.unit.media.roomtape_vp8_samples import vp8_frames

from roomtape.media import tap
from roomtape.media.frame import VIDEO_TIME_BASE, EncodedFrame

rx_module: Any = rtcrtpreceiver  # reached into on purpose: that is what is under test

VP8 = RTCRtpCodecParameters(mimeType="video/VP8", clockRate=90000, payloadType=100)
SSRC = 1234


# ---------------------------------------------------------------- self-check: fails loudly on change


def test_self_check_passes_on_the_pinned_aiortc() -> None:
    assert aiortc.__version__.startswith(tap.TESTED_AIORTC_VERSIONS)
    tap.check_internals()


def test_self_check_names_a_removed_method(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(RTCRtpReceiver, "_send_rtcp_pli")
    with pytest.raises(tap.AiortcInternalsError, match="_send_rtcp_pli"):
        tap.check_internals()


def test_self_check_names_a_changed_worker_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    def decoder_worker(loop: Any, input_q: Any, output_q: Any) -> None:
        get_decoder = None  # noqa: F841

    monkeypatch.setattr(tap, "_ORIGINAL_DECODER_WORKER", decoder_worker)
    with pytest.raises(tap.AiortcInternalsError, match="signature changed"):
        tap.check_internals()


def test_self_check_names_a_renamed_private_attribute(monkeypatch: pytest.MonkeyPatch) -> None:
    original = RTCRtpReceiver.__init__

    def __init__(self: Any, kind: str, transport: Any) -> None:  # sets no timestamp mapper
        original(self, kind, transport)

    monkeypatch.setattr(RTCRtpReceiver, "__init__", __init__)
    with pytest.raises(tap.AiortcInternalsError, match="timestamp_mapper"):
        tap.check_internals()


def test_install_is_idempotent_and_reversible() -> None:
    tap.install()
    tap.install()
    assert tap.installed()
    tap.uninstall()
    assert not tap.installed()
    assert rx_module.get_decoder is tap._ORIGINAL_GET_DECODER
    tap.install()
    assert tap.installed()


def test_untapped_threads_still_get_real_decoders() -> None:
    tap.install()
    made: list[object] = []
    thread = threading.Thread(target=lambda: made.append(rx_module.get_decoder(VP8)))
    thread.start()
    thread.join()
    assert type(made[0]).__name__ == "Vp8Decoder"


# ---------------------------------------------------------------- real receivers fed with RTP


@pytest.fixture
def transport() -> Iterator[RTCDtlsTransport]:
    ice = RTCIceTransport(RTCIceGatherer(iceServers=[]))
    yield RTCDtlsTransport(ice, [RTCCertificate.generateCertificate()])


def new_receiver(transport: RTCDtlsTransport) -> RTCRtpReceiver:
    receiver = RTCRtpReceiver("video", transport)
    receiver._track = RemoteStreamTrack(kind="video")
    return receiver


async def start(receiver: RTCRtpReceiver) -> None:
    await receiver.receive(
        RTCRtpReceiveParameters(codecs=[VP8], encodings=[RTCRtpDecodingParameters(ssrc=SSRC, payloadType=100)])
    )


def rtp_packets(first_timestamp: int, frames: int = 3) -> list[RtpPacket]:
    packets = []
    seq = 1000
    for i, frame in enumerate(vp8_frames(320, 240, frames)):
        payloads = Vp8Encoder._packetize(frame, picture_id=i)
        for j, payload in enumerate(payloads):
            packet = RtpPacket(
                payload_type=100,
                sequence_number=seq,
                timestamp=(first_timestamp + i * 3000) & 0xFFFFFFFF,
                ssrc=SSRC,
                marker=int(j == len(payloads) - 1),
                payload=payload,
            )
            packets.append(packet)
            seq += 1
    return packets


@pytest.fixture
async def receivers(transport: RTCDtlsTransport) -> AsyncIterator[tuple[RTCRtpReceiver, RTCRtpReceiver]]:
    tapped, plain = new_receiver(transport), new_receiver(transport)
    yield tapped, plain
    for receiver in (tapped, plain):
        await receiver.stop()


async def feed(receiver: RTCRtpReceiver, packets: list[RtpPacket]) -> None:
    for packet in packets:
        await receiver._handle_rtp_packet(packet, arrival_time_ms=0)


@pytest.mark.parametrize("loop_delivery", [True, False], ids=["on-the-loop", "via-decoder-thread"])
async def test_tapped_receiver_yields_encoded_frames_while_others_decode(
    receivers: tuple[RTCRtpReceiver, RTCRtpReceiver], loop_delivery: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # via-decoder-thread: the path before LoopDelivery, kept for bench/receive_path.py's "before" variant.
    monkeypatch.setattr(tap, "LOOP_DELIVERY", loop_delivery)
    tapped_rx, plain_rx = receivers
    tapped = tap.tap_receiver(tapped_rx)
    await start(tapped_rx)
    await start(plain_rx)
    # Start 1500 ticks before the 32-bit wrap: the second frame's wire timestamp wraps to 1500.
    first = 2**32 - 1500
    await feed(tapped_rx, rtp_packets(first))
    await feed(plain_rx, rtp_packets(first))

    # The jitter buffer releases a frame once the next one starts: 3 frames in, 2 out.
    key = await asyncio.wait_for(tapped_rx.track.recv(), 2)
    inter = await asyncio.wait_for(tapped_rx.track.recv(), 2)
    assert isinstance(key, EncodedFrame) and isinstance(inter, EncodedFrame)
    assert (key.keyframe, key.width, key.height, key.pts, key.rtp_timestamp) == (True, 320, 240, 0, first)
    assert (inter.keyframe, inter.width, inter.pts, inter.rtp_timestamp) == (False, None, 3000, 1500)
    assert key.data == vp8_frames(320, 240, 3)[0]
    assert key.time_base == VIDEO_TIME_BASE and key.mime_type == "video/vp8"
    assert (tapped.frames, tapped.keyframes) == (2, 1)

    decoded = await asyncio.wait_for(plain_rx.track.recv(), 2)
    assert isinstance(decoded, av.VideoFrame) and (decoded.width, decoded.height) == (320, 240)


async def test_tapped_frames_reach_the_track_on_the_loop_and_the_stop_ends_it_after_them(
    receivers: tuple[RTCRtpReceiver, RTCRtpReceiver],
) -> None:
    tapped_rx, _ = receivers
    tap.tap_receiver(tapped_rx)
    await start(tapped_rx)
    queue: asyncio.Queue[Any] = tapped_rx.track._queue  # type: ignore[union-attr]
    packets = rtp_packets(90_000, frames=4)
    await feed(tapped_rx, packets)  # never suspends: a frame handed to a thread could not have come back yet
    assert queue.qsize() == 3  # in the track's queue as soon as the jitter buffer let them out (4 in, 3 out)
    tapped_rx._RTCRtpReceiver__stop_decoder()  # type: ignore[attr-defined]  # what a BYE or DTLS close does
    got = [await asyncio.wait_for(tapped_rx.track.recv(), 2) for _ in range(3)]
    assert [f.pts for f in got] == [0, 3000, 6000]
    with pytest.raises(MediaStreamError):
        await asyncio.wait_for(tapped_rx.track.recv(), 2)  # the thread ended the track after the frames


async def test_sender_report_is_mapped_to_the_frame_timeline(
    receivers: tuple[RTCRtpReceiver, RTCRtpReceiver],
) -> None:
    receiver, _ = receivers
    tapped = tap.tap_receiver(receiver)
    await start(receiver)
    assert tapped.sender_report is None

    ntp = (3_900_000_000 << 32) | (1 << 31)  # 2023-08-03T..., plus half a second
    report = RtcpSrPacket(
        ssrc=SSRC,
        sender_info=RtcpSenderInfo(ntp_timestamp=ntp, rtp_timestamp=500, packet_count=1, octet_count=1),
    )
    await receiver._handle_rtcp_packet(report)
    assert tapped.sender_report is not None and tapped.sender_report.pts is None  # no frame yet

    first = 2**32 - 1500
    await feed(receiver, rtp_packets(first))
    await asyncio.wait_for(receiver.track.recv(), 2)
    await receiver._handle_rtcp_packet(report)
    sr = tapped.sender_report
    assert sr is not None
    assert (sr.ssrc, sr.rtp_timestamp, sr.ntp_timestamp) == (SSRC, 500, ntp)
    assert sr.pts == 2000  # 1500 ticks to the wrap, then 500
    assert sr.wallclock == pytest.approx(3_900_000_000 - 2_208_988_800 + 0.5)

    zeroed = RtcpSrPacket(
        ssrc=SSRC, sender_info=RtcpSenderInfo(ntp_timestamp=0, rtp_timestamp=0, packet_count=0, octet_count=0)
    )
    await receiver._handle_rtcp_packet(zeroed)
    assert tapped.sender_report is sr  # aiortc's pre-media reports carry nothing to map


async def test_keyframe_requests_are_rate_limited_and_use_the_media_ssrc(
    receivers: tuple[RTCRtpReceiver, RTCRtpReceiver],
) -> None:
    receiver, _ = receivers
    tapped = tap.tap_receiver(receiver, keyframe_interval=0.3)
    await start(receiver)
    sent: list[int] = []

    async def send_pli(media_ssrc: int) -> None:
        sent.append(media_ssrc)

    receiver._send_rtcp_pli = send_pli  # type: ignore[method-assign]
    assert not tapped.request_keyframe()  # no packet yet: no SSRC to ask
    await feed(receiver, rtp_packets(0)[:1])
    assert tapped.media_ssrc() == SSRC
    assert tapped.request_keyframe()
    assert not tapped.request_keyframe()
    await asyncio.sleep(0.31)
    assert tapped.request_keyframe()
    await asyncio.sleep(0)
    assert sent == [SSRC, SSRC] and tapped.plis_sent == 2


async def test_tapping_a_started_receiver_is_refused(receivers: tuple[RTCRtpReceiver, RTCRtpReceiver]) -> None:
    receiver, _ = receivers
    await start(receiver)
    with pytest.raises(RuntimeError, match="already started"):
        tap.tap_receiver(receiver)


async def test_pli_on_a_forwarding_sender_goes_to_the_callback(transport: RTCDtlsTransport) -> None:
    sender = RTCRtpSender("video", transport)
    calls: list[int] = []
    tap.relay_keyframe_requests(sender, lambda: calls.append(1))
    # aiortc's own RTCP dispatch for the sender, as the DTLS transport calls it.
    await sender._handle_rtcp_packet(RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=sender._ssrc))
    assert calls == [1]


def _opus(seq: int) -> RtpPacket:
    packet = RtpPacket(payload_type=96, sequence_number=seq & 0xFFFF, timestamp=(seq * 960) & 0xFFFFFFFF)
    packet._data = bytes([seq & 0xFF])  # type: ignore[attr-defined]
    return packet


def test_audio_packet_buffer_passes_every_packet_through_loss() -> None:
    # aiortc's own audio buffer lets ~74 % of packets through at 5 % random loss; this one, all that arrive.
    import random

    rng = random.Random(5)
    buffer = tap.AudioPacketBuffer()
    sent = [seq for seq in range(65_000, 65_000 + 2000) if rng.random() >= 0.05]  # wraps at 65536
    out = [buffer.add(_opus(seq))[1] for seq in sent]
    assert all(frame is not None for frame in out)
    assert [f.data[0] for f in out] == [seq & 0xFF for seq in sent]
    assert [f.timestamp for f in out] == [(seq * 960) & 0xFFFFFFFF for seq in sent]


def test_audio_packet_buffer_drops_duplicates_and_late_packets_but_follows_a_restart() -> None:
    buffer = tap.AudioPacketBuffer()
    assert buffer.add(_opus(10))[1] is not None
    assert buffer.add(_opus(12))[1] is not None
    assert buffer.add(_opus(11))[1] is None  # late: 12 was passed on
    assert buffer.add(_opus(12))[1] is None  # duplicate
    assert buffer.add(_opus(13))[1] is not None
    assert buffer.add(_opus(40_000))[1] is not None  # far away: a restarted stream
    assert buffer.add(_opus(40_001))[1] is not None


async def test_tapped_audio_receiver_releases_each_opus_packet_at_once(transport: RTCDtlsTransport) -> None:
    opus = RTCRtpCodecParameters(mimeType="audio/opus", clockRate=48000, channels=2, payloadType=111)
    receiver = RTCRtpReceiver("audio", transport)
    receiver._track = RemoteStreamTrack(kind="audio")  # type: ignore[attr-defined]
    tap.tap_receiver(receiver)
    assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, tap.AudioPacketBuffer)  # type: ignore[attr-defined]
    await receiver.receive(
        RTCRtpReceiveParameters(codecs=[opus], encodings=[RTCRtpDecodingParameters(ssrc=SSRC, payloadType=111)])
    )
    try:
        # Packet 2 is lost: 1 and 3 still come out, each as soon as it arrives (no prefetch, no stall).
        for seq in (1, 3):
            packet = RtpPacket(payload_type=111, sequence_number=seq, timestamp=seq * 960, ssrc=SSRC, payload=b"\xfc")
            await receiver._handle_rtp_packet(packet, arrival_time_ms=0)
            frame = await asyncio.wait_for(receiver.track.recv(), 2)
            assert isinstance(frame, EncodedFrame) and frame.data == b"\xfc" and frame.rtp_timestamp == seq * 960
    finally:
        await receiver.stop()


def test_slice_rate_counter_answers_as_aiortcs_rate_counter() -> None:
    """Same add/rate/reset answers as aiortc's RateCounter on irregular arrivals, stalls and resets."""
    import random

    from aiortc.rate import RateCounter

    from roomtape.media.tap import SliceRateCounter

    rng = random.Random(7)
    theirs, ours = RateCounter(50, 8000), SliceRateCounter(50, 8000)
    now = 1_000
    answers_theirs, answers_ours = [], []
    for step in range(5_000):
        now += rng.choice([0, 0, 1, 2, 3, 7, 20, 49, 50, 51, 130])
        size = rng.randint(1, 1_400)
        if step % 997 == 0:
            theirs.reset()
            ours.reset()
        answers_theirs.append(theirs.rate(now))
        answers_ours.append(ours.rate(now))
        theirs.add(size, now)
        ours.add(size, now)
    assert answers_ours == answers_theirs
    assert any(a is not None for a in answers_ours) and any(a is None for a in answers_ours)


def test_remb_limiter_sends_at_libwebrtcs_pace() -> None:
    estimates: list[tap.Remb | None] = []

    def add(arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int) -> tap.Remb | None:
        return estimates.pop(0)

    limiter = tap.RembLimiter(add)

    def feed(at_ms: int, bitrate: int | None) -> tap.Remb | None:
        estimates.append(None if bitrate is None else (bitrate, [SSRC]))
        return limiter.add(arrival_time_ms=at_ms, abs_send_time=0, payload_size=1200, ssrc=SSRC)

    assert feed(0, None) is None  # no estimate yet
    assert feed(10, 1_000_000) == (1_000_000, [SSRC])  # the first goes out
    # Over-use: an estimate per packet; within 200 ms only a drop below 97 % of the last one sent goes out.
    assert feed(20, 990_000) is None
    assert feed(30, 1_100_000) is None
    assert feed(40, 960_000) == (960_000, [SSRC])
    assert feed(200, 950_000) is None
    assert feed(240, 1_200_000) == (1_200_000, [SSRC])  # 200 ms after the last one sent
    assert limiter.held == 3


async def test_tapped_video_receiver_limits_its_rembs(transport: RTCDtlsTransport) -> None:
    receiver = new_receiver(transport)
    tap.tap_receiver(receiver)
    estimator = receiver._RTCRtpReceiver__remote_bitrate_estimator  # type: ignore[attr-defined]
    assert isinstance(estimator.incoming_bitrate, tap.SliceRateCounter)
    assert getattr(estimator.add, "__self__", None).__class__ is tap.RembLimiter
    await receiver.stop()
