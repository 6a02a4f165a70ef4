"""Encoded-frame tap on aiortc receivers: the one module that touches aiortc's internals.

aiortc has no public encoded-frame API. Each ``RTCRtpReceiver`` depayloads RTP, re-assembles frames in its
jitter buffer (keeping SRTP, RTX, NACK and reordering), and hands every complete frame to a decoder thread
running ``aiortc.rtcrtpreceiver.decoder_worker``, which looks up ``get_decoder(codec)`` in the module's
globals and pushes whatever ``decoder.decode()`` returns into the remote track's queue, so it comes out of
``track.recv()``.

How the seam is used, and why:

* :func:`install` replaces two module globals of ``aiortc.rtcrtpreceiver``: ``decoder_worker`` by a thin
  wrapper and ``get_decoder`` by a dispatcher. The wrapper runs aiortc's own worker unchanged, after noting
  in a thread-local whether the receiver it serves was tapped (it recognises the receiver by the track
  queue it is given). The dispatcher returns a :class:`PassthroughDecoder` in tapped threads and aiortc's
  real decoder everywhere else. So the choice is **per receiver**: the server's tapped receivers never
  decode, while any other peer connection in the process (a test client, an agent SDK) decodes as usual.
  Patching per peer connection is not possible: the worker is a module-level function that receives no
  reference to its receiver.
* :func:`tap_receiver` marks one receiver. It must run before the receiver starts (``receive()`` starts the
  decoder thread once DTLS connects); the ``"track"`` event of ``RTCPeerConnection`` fires inside
  ``setRemoteDescription``, before that, and is the place to call it.
* No thread hop per frame: :func:`tap_receiver` swaps the receiver's decoder queue for a
  :class:`LoopDelivery`, so each frame the jitter buffer completes is wrapped and put in the track's queue
  right where it arrives, on the event loop. aiortc's decoder thread still starts, but only ever gets the
  stop's ``None`` (it then ends the track, after every frame, as before). Through the thread, each frame cost
  a cross-thread wake-up and an ``asyncio.run_coroutine_threadsafe`` task back on the loop: about a fifth of
  a media process's loop time at a few tracks (``bench/scaleout.py`` profile), paid per frame, so it weighed
  most where a process had few tracks to batch wake-ups over. Video keeps aiortc's jitter buffer (frame
  re-assembly, NACK); audio gets :class:`AudioPacketBuffer`, since every Opus packet is a whole frame and
  aiortc's audio buffer turns a little loss into a lot.
* Video receivers keep aiortc's receive-side bitrate estimator (REMB feedback to the publisher), but its
  incoming-rate counter is swapped for :class:`SliceRateCounter`, which gives the same answers without a
  Python loop iteration per elapsed millisecond, and its estimates go out through :class:`RembLimiter`, at
  libwebrtc's pace instead of one REMB per packet while the estimator sees over-use.

What comes out of ``track.recv()`` on a tapped receiver is an :class:`~roomtape.media.frame.EncodedFrame`:

* ``pts`` is aiortc's re-based timestamp: its ``TimestampMapper`` (one per receiver, not per SSRC) sets 0 at
  the first frame and treats *any* backwards step as a 32-bit wrap, adding 2**32. Frames come out of the
  jitter buffer in sequence order, so this only happens on a real wrap, or when the publisher restarts its
  RTP timestamps (new SSRC, replaced track): then ``pts`` jumps forward by nearly 2**32 ticks (13 hours of
  video), and a recorder must start a new segment on such a jump.
* ``rtp_timestamp`` is the value on the wire, recovered from the mapper's origin; RTCP sender reports refer
  to it (see :class:`SenderReport`).
* keyframe flag and VP8 size are parsed from the bitstream; audio frames always count as keyframes.

With the decoder gone aiortc no longer sends PLIs on decode errors (it still does on jitter-buffer
overflow), so :meth:`TappedReceiver.request_keyframe` sends them, rate-limited. aiortc also drops the
NTP/RTP pairs of incoming sender reports; :func:`tap_receiver` wraps the receiver's RTCP handler to keep
the latest one. On the sending side, :func:`relay_keyframe_requests` routes a forwarding sender's incoming
PLI/FIR to a callback instead of to aiortc's encoder, which a forwarded track does not use.

:func:`check_internals` verifies every attribute and code path relied on, and raises
:class:`AiortcInternalsError` naming what moved; :func:`install` calls it first.
"""

from __future__ import annotations

import asyncio
import fractions
import inspect
import logging
import queue
import threading
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

import aiortc
from aiortc import RTCRtpReceiver, RTCRtpSender
from aiortc import rate as _rate_module
from aiortc import rtcrtpreceiver as _rx_module
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtcpSrPacket

from roomtape.media.frame import (
    EncodedFrame,
    h264_is_keyframe,
    parse_vp8_keyframe,
)
from roomtape.media.h264 import picture_size
from roomtape.media.ratelimit import RateLimiter

__all__ = [
    "DEFAULT_KEYFRAME_INTERVAL",
    "AiortcInternalsError",
    "LoopDelivery",
    "PassthroughDecoder",
    "RembLimiter",
    "SenderReport",
    "SliceRateCounter",
    "TappedReceiver",
    "check_internals",
    "install",
    "installed",
    "relay_keyframe_requests",
    "tap_receiver",
    "uninstall",
]

logger = logging.getLogger(__name__)

TESTED_AIORTC_VERSIONS: Final = ("1.16.",)
"""aiortc versions whose internals this module was written against (prefixes)."""

DEFAULT_KEYFRAME_INTERVAL: Final = 0.3
"""Minimum seconds between two PLIs sent for one track."""

# The module whose globals are patched; typed Any because we reach into its privates.
_rx: Any = _rx_module

# Seconds between the NTP epoch (1900) and the Unix epoch (1970).
_NTP_UNIX_OFFSET: Final = 2_208_988_800

# The private attributes of RTCRtpReceiver we read, as Python mangles them.
_RX_TIMESTAMP_MAPPER: Final = "_RTCRtpReceiver__timestamp_mapper"
_RX_RTX_SSRC: Final = "_RTCRtpReceiver__rtx_ssrc"
_RX_STARTED: Final = "_RTCRtpReceiver__started"
_RX_JITTER_BUFFER: Final = "_RTCRtpReceiver__jitter_buffer"
_RX_REMB: Final = "_RTCRtpReceiver__remote_bitrate_estimator"
_RX_DECODER_QUEUE: Final = "_RTCRtpReceiver__decoder_queue"

FAST_RATE_COUNTER: bool = True
"""Give tapped video receivers :class:`SliceRateCounter` (``bench/receive_path.py`` turns it off for its "before")."""

REMB_LIMIT: bool = True
"""Send tapped video receivers' REMBs through :class:`RembLimiter` (``bench/receive_path.py`` measures without)."""

REMB_INTERVAL_MS: Final = 200
"""Least milliseconds between two REMBs of one receiver, unless the estimate drops (libwebrtc's send interval)."""

REMB_DROP: Final = 0.97
"""An estimate below this share of the last one sent goes out at once (libwebrtc's send threshold, 97 %)."""

LOOP_DELIVERY: bool = True
"""Deliver tapped frames on the event loop (:class:`LoopDelivery`); False keeps aiortc's decoder-thread hop, the
path before it, which ``bench/receive_path.py`` measures as its "before"."""


class AiortcInternalsError(RuntimeError):
    """The installed aiortc does not have the internals the encoded-frame tap relies on.

    Raised by :func:`check_internals` (and so by :func:`install`) with the list of what moved. It is not
    retryable: pin aiortc to a tested version or update ``roomtape.media.tap``.
    """


# --------------------------------------------------------------------------------------------------
# self-check


def _code_names(func: object) -> set[str]:
    code = getattr(func, "__code__", None)
    return set(code.co_names) if code is not None else set()


def _params(func: object) -> list[str] | None:
    try:
        return list(inspect.signature(func).parameters)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def check_internals() -> None:
    """Verify that aiortc still has every internal this module depends on.

    Checks signatures, attribute names (as mangled in the compiled code) and global look-ups, without
    needing a connection.

    Raises:
        AiortcInternalsError: listing each internal that is missing or changed.
    """
    problems: list[str] = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            problems.append(what)

    worker = _ORIGINAL_DECODER_WORKER
    need(callable(worker), "aiortc.rtcrtpreceiver.decoder_worker is missing")
    need(
        _params(worker) == ["loop", "input_q", "output_q", "decode_error"],
        "decoder_worker(loop, input_q, output_q, decode_error) signature changed",
    )
    need(
        "get_decoder" in _code_names(worker),
        "decoder_worker no longer looks up the module global get_decoder",
    )
    need(callable(_ORIGINAL_GET_DECODER), "aiortc.rtcrtpreceiver.get_decoder is missing")
    need(_params(_ORIGINAL_GET_DECODER) == ["codec"], "get_decoder(codec) signature changed")

    receive_names = _code_names(getattr(RTCRtpReceiver, "receive", None))
    need("decoder_worker" in receive_names, "RTCRtpReceiver.receive no longer starts decoder_worker")
    need("_queue" in receive_names, "RTCRtpReceiver.receive no longer passes the track's _queue")
    need(_RX_STARTED in receive_names, "RTCRtpReceiver.__started is gone")
    need(_RX_DECODER_QUEUE in receive_names, "RTCRtpReceiver.receive no longer hands __decoder_queue to the thread")

    init_names = _code_names(getattr(RTCRtpReceiver, "__init__", None))
    for attr in (_RX_TIMESTAMP_MAPPER, _RX_RTX_SSRC, _RX_DECODER_QUEUE, "_track"):
        need(attr in init_names, f"RTCRtpReceiver.__init__ no longer sets {attr}")

    mapper_cls = getattr(_rx, "TimestampMapper", None)
    need(mapper_cls is not None, "aiortc.rtcrtpreceiver.TimestampMapper is missing")
    if mapper_cls is not None:
        need(
            {"_origin", "_last"} <= _code_names(mapper_cls.__init__),
            "TimestampMapper no longer has _origin/_last",
        )

    handle_rtp = _code_names(getattr(RTCRtpReceiver, "_handle_rtp_packet", None))
    need(_RX_TIMESTAMP_MAPPER in handle_rtp, "_handle_rtp_packet no longer maps timestamps")
    need(
        _RX_DECODER_QUEUE in handle_rtp and "put" in handle_rtp,
        "_handle_rtp_packet no longer puts frames in __decoder_queue",
    )
    need(
        _RX_DECODER_QUEUE in _code_names(getattr(RTCRtpReceiver, "_RTCRtpReceiver__stop_decoder", None)),
        "RTCRtpReceiver.__stop_decoder no longer stops the thread through __decoder_queue",
    )
    need(_RX_JITTER_BUFFER in init_names, "RTCRtpReceiver.__init__ no longer sets __jitter_buffer")
    need(
        _RX_JITTER_BUFFER in handle_rtp and "add" in handle_rtp,
        "_handle_rtp_packet no longer re-assembles frames with __jitter_buffer.add",
    )
    need(_params(JitterFrame) == ["data", "timestamp"], "aiortc.jitterbuffer.JitterFrame(data, timestamp) changed")

    need(_RX_REMB in init_names, "RTCRtpReceiver.__init__ no longer sets __remote_bitrate_estimator")
    estimator_init = _code_names(getattr(getattr(_rate_module, "RemoteBitrateEstimator", None), "__init__", None))
    need(
        {"incoming_bitrate", "RateCounter"} <= estimator_init,
        "RemoteBitrateEstimator no longer counts incoming_bitrate with a RateCounter",
    )
    need(
        _params(getattr(getattr(_rate_module, "RemoteBitrateEstimator", None), "add", None))
        == ["self", "arrival_time_ms", "abs_send_time", "payload_size", "ssrc"],
        "RemoteBitrateEstimator.add(arrival_time_ms, abs_send_time, payload_size, ssrc) changed",
    )
    need(_RX_REMB in handle_rtp, "_handle_rtp_packet no longer feeds __remote_bitrate_estimator")
    counter_cls = getattr(_rate_module, "RateCounter", None)
    need(
        counter_cls is not None
        and {"_window_size", "_scale"} <= _code_names(counter_cls.__init__)
        and {"add", "rate", "reset"} <= set(vars(counter_cls)),
        "aiortc.rate.RateCounter(window_size, scale) with add/rate/reset changed",
    )

    nack = getattr(RTCRtpReceiver, "_send_rtcp_nack", None)
    need(inspect.iscoroutinefunction(nack), "RTCRtpReceiver._send_rtcp_nack is not a coroutine function")
    need(_params(nack) == ["self", "media_ssrc", "lost"], "RTCRtpReceiver._send_rtcp_nack(media_ssrc, lost) changed")
    pli = getattr(RTCRtpReceiver, "_send_rtcp_pli", None)
    need(inspect.iscoroutinefunction(pli), "RTCRtpReceiver._send_rtcp_pli is not a coroutine function")
    need(_params(pli) == ["self", "media_ssrc"], "RTCRtpReceiver._send_rtcp_pli(media_ssrc) changed")

    rtcp = getattr(RTCRtpReceiver, "_handle_rtcp_packet", None)
    need(inspect.iscoroutinefunction(rtcp), "RTCRtpReceiver._handle_rtcp_packet is not a coroutine")
    need(_params(rtcp) == ["self", "packet"], "RTCRtpReceiver._handle_rtcp_packet(packet) changed")
    need(
        callable(getattr(RTCRtpReceiver, "getSynchronizationSources", None)),
        "RTCRtpReceiver.getSynchronizationSources is missing",
    )

    sender_rtcp = _code_names(getattr(RTCRtpSender, "_handle_rtcp_packet", None))
    need("_send_keyframe" in sender_rtcp, "RTCRtpSender no longer calls _send_keyframe on PLI/FIR")
    need(
        "pack" in _code_names(getattr(RTCRtpSender, "_next_encoded_frame", None)),
        "RTCRtpSender no longer packs pre-encoded packets",
    )

    sr_fields = getattr(RtcpSrPacket, "__init__", None)
    need(
        _params(sr_fields) is not None and "sender_info" in (_params(sr_fields) or []),
        "RtcpSrPacket(sender_info=...) changed",
    )

    if problems:
        raise AiortcInternalsError(
            f"aiortc {aiortc.__version__} internals moved; roomtape.media.tap needs updating: " + "; ".join(problems)
        )
    if not aiortc.__version__.startswith(TESTED_AIORTC_VERSIONS):
        logger.warning(
            "aiortc %s passed the tap self-check but was not tested (tested: %s)",
            aiortc.__version__,
            ", ".join(TESTED_AIORTC_VERSIONS),
        )


# --------------------------------------------------------------------------------------------------
# sender reports and tapped receivers


@dataclass(frozen=True, slots=True)
class SenderReport:
    """The NTP<->RTP pair of the latest RTCP sender report (RFC 3550 §6.4.1) of a tapped track."""

    ssrc: int
    """SSRC of the media stream the report describes."""
    ntp_timestamp: int
    """64-bit NTP timestamp of the sender's wall clock when it sent the report."""
    rtp_timestamp: int
    """RTP timestamp (wire value, 32 bits) that corresponds to ``ntp_timestamp``."""
    pts: int | None
    """``rtp_timestamp`` on the same scale as ``EncodedFrame.pts``, or None if no frame was seen yet."""
    received_at: float
    """Local wall-clock time (``time.time()``) when the report arrived."""

    @property
    def wallclock(self) -> float:
        """The sender's wall-clock time of the report, in Unix seconds."""
        return (self.ntp_timestamp >> 32) - _NTP_UNIX_OFFSET + (self.ntp_timestamp & 0xFFFFFFFF) / 2**32


def _signed32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class TappedReceiver:
    """A receiver whose track yields encoded frames, with keyframe requests and sender reports.

    Made by :func:`tap_receiver`; not constructed directly.
    """

    def __init__(self, receiver: RTCRtpReceiver, kind: str, keyframe_interval: float) -> None:
        self._receiver = receiver
        self.kind = kind
        """``"audio"`` or ``"video"``."""
        self._mapper: Any = getattr(receiver, _RX_TIMESTAMP_MAPPER)
        self._rtx_ssrcs: dict[int, int] = getattr(receiver, _RX_RTX_SSRC)
        self._limiter = RateLimiter(keyframe_interval)
        self._tasks: set[asyncio.Task[None]] = set()
        self._media_ssrc: int | None = None
        self.sender_report: SenderReport | None = None
        """The latest sender report received, or None."""
        self.frames = 0
        """Number of encoded frames that went through the tap."""
        self.keyframes = 0
        """Number of those frames that were keyframes."""
        self.plis_sent = 0
        """Number of PLIs sent by :meth:`request_keyframe`."""
        self.bytes = 0
        """Payload bytes of those frames."""
        self.nacks_sent = 0
        """Number of NACK packets aiortc's receiver sent for lost RTP packets."""
        self.nacked_packets = 0
        """Number of RTP packets those NACKs asked for again."""
        # Count NACKs where aiortc sends them: one call per NACK packet (rare), nothing per RTP packet.
        send_nack: Callable[[int, list[int]], Awaitable[None]] = receiver._send_rtcp_nack

        async def counted_nack(media_ssrc: int, lost: list[int]) -> None:
            self.nacks_sent += 1
            self.nacked_packets += len(lost)
            await send_nack(media_ssrc, lost)

        receiver._send_rtcp_nack = counted_nack  # type: ignore[method-assign]

    @property
    def receiver(self) -> RTCRtpReceiver:
        """The aiortc receiver."""
        return self._receiver

    @property
    def keyframe_limiter(self) -> RateLimiter:
        """The rate limiter shared by every keyframe request for this track."""
        return self._limiter

    def media_ssrc(self) -> int | None:
        """The SSRC of the media stream (not its RTX stream), or None before any packet arrived."""
        if self._media_ssrc is not None:
            return self._media_ssrc
        sources = [s for s in self._receiver.getSynchronizationSources() if s.source not in self._rtx_ssrcs]
        if not sources:
            return None
        return max(sources, key=lambda s: s.timestamp).source

    def request_keyframe(self) -> bool:
        """Send a PLI to the publisher, unless one was sent less than the rate-limit interval ago.

        Must be called on the event loop that runs the peer connection.

        Returns:
            True if a PLI was sent; False for audio, when rate-limited, or when no SSRC is known yet.
        """
        if self.kind != "video":
            return False
        ssrc = self.media_ssrc()
        if ssrc is None or not self._limiter.allow():
            return False
        task = asyncio.get_running_loop().create_task(self._send_pli(ssrc))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self.plis_sent += 1
        return True

    async def _send_pli(self, ssrc: int) -> None:
        send: Callable[[int], Awaitable[None]] = self._receiver._send_rtcp_pli
        await send(ssrc)

    def _on_sender_report(self, packet: Any) -> None:
        info = packet.sender_info
        if info.ntp_timestamp == 0:
            # aiortc sends zeroed reports before its first RTP packet: nothing to map yet.
            return
        self._media_ssrc = packet.ssrc
        pts: int | None = None
        last, origin = self._mapper._last, self._mapper._origin
        if last is not None and origin is not None:
            # Place the report next to the latest frame; handles a wrap between the two.
            pts = (last - origin) + _signed32(info.rtp_timestamp - last)
        self.sender_report = SenderReport(
            ssrc=packet.ssrc,
            ntp_timestamp=info.ntp_timestamp,
            rtp_timestamp=info.rtp_timestamp,
            pts=pts,
            received_at=time.time(),
        )

    def _rtp_timestamp(self, pts: int) -> int:
        origin: int = self._mapper._origin
        return (pts + origin) & 0xFFFFFFFF


class PassthroughDecoder:
    """A stand-in for aiortc's decoders that returns the jitter buffer's frames still encoded.

    Runs on the event loop, in the tapped receiver's :class:`LoopDelivery` (and would in its decoder
    thread, should a frame ever reach it). ``decode()`` returns one :class:`EncodedFrame` per non-empty frame.

    Args:
        codec: The negotiated ``RTCRtpCodecParameters`` (aiortc type).
        tapped: The receiver's tap state.
    """

    def __init__(self, codec: Any, tapped: TappedReceiver) -> None:
        self._tapped = tapped
        self._mime = str(codec.mimeType).lower()
        self._time_base = fractions.Fraction(1, int(codec.clockRate))
        self._is_vp8 = self._mime == "video/vp8"
        self._is_h264 = self._mime == "video/h264"
        self._is_audio = self._mime.startswith("audio/")

    def decode(self, encoded_frame: Any) -> list[EncodedFrame]:
        """Wrap one jitter-buffer frame.

        Args:
            encoded_frame: aiortc's ``JitterFrame`` (``data``, re-based ``timestamp``).

        Returns:
            A one-element list, or an empty list for an empty frame (padding only).
        """
        data: bytes = encoded_frame.data
        if not data:
            return []
        pts: int = encoded_frame.timestamp
        width = height = None
        if self._is_audio:
            keyframe = True
        elif self._is_vp8:
            keyframe, width, height = parse_vp8_keyframe(data)
        elif self._is_h264:
            keyframe = h264_is_keyframe(data)
            size = picture_size(data) if keyframe else None  # an SPS comes with (or as) a keyframe
            if size is not None:
                width, height = size
        else:
            keyframe = False
        tapped = self._tapped
        tapped.frames += 1
        tapped.bytes += len(data)
        if keyframe and not self._is_audio:
            tapped.keyframes += 1
        return [
            EncodedFrame(
                data=data,
                pts=pts,
                time_base=self._time_base,
                rtp_timestamp=tapped._rtp_timestamp(pts),
                keyframe=keyframe,
                mime_type=self._mime,
                received_at=time.time(),
                width=width,
                height=height,
            )
        ]


class LoopDelivery:
    """A tapped receiver's decoder queue: frames go to the track's queue on the event loop, not via a thread.

    aiortc's receiver ``put()``s ``(codec, jitter frame)`` from ``_handle_rtp_packet`` (on the loop) and
    ``None`` when it stops; its decoder thread ``get()``s. Frames are wrapped by a :class:`PassthroughDecoder`
    here and put in the track's queue at once; ``None`` goes on to the thread, which then puts the track's
    end after every frame, as aiortc does.

    Args:
        tapped: The receiver's tap state.
        output: The remote track's queue (``track._queue``).
    """

    def __init__(self, tapped: TappedReceiver, output: asyncio.Queue[Any]) -> None:
        self._tapped = tapped
        self._output = output
        self._control: queue.Queue[Any] = queue.Queue()
        self._decoder: PassthroughDecoder | None = None
        self._codec_name: str | None = None

    def put(self, item: Any) -> None:
        """Take a frame (on the loop) or the stop's ``None`` (for the thread)."""
        if item is None:
            self._control.put(None)
            return
        codec, encoded_frame = item
        if self._decoder is None or codec.name != self._codec_name:
            self._decoder, self._codec_name = PassthroughDecoder(codec, self._tapped), codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except Exception:  # one unparsable frame must not break the DTLS transport that delivered it
            logger.exception("tapped %s receiver: dropped a frame that could not be wrapped", self._tapped.kind)
            return
        for frame in frames:
            self._output.put_nowait(frame)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """What the decoder thread waits for: only the stop's ``None``."""
        return self._control.get(block, timeout)


# --------------------------------------------------------------------------------------------------
# installation

_ORIGINAL_DECODER_WORKER: Final[Callable[..., None]] = _rx.decoder_worker
_ORIGINAL_GET_DECODER: Final[Callable[[Any], Any]] = _rx.get_decoder

# Track queues of tapped receivers; weak so a dropped peer connection leaves nothing behind.
_tapped_queues: weakref.WeakKeyDictionary[Any, TappedReceiver] = weakref.WeakKeyDictionary()
_tapped_lock = threading.Lock()
_thread_state = threading.local()


def _decoder_worker(loop: Any, input_q: Any, output_q: Any, decode_error: Any) -> None:
    with _tapped_lock:
        _thread_state.tapped = _tapped_queues.get(output_q)
    try:
        _ORIGINAL_DECODER_WORKER(loop, input_q, output_q, decode_error)
    finally:
        _thread_state.tapped = None


def _get_decoder(codec: Any) -> Any:
    tapped: TappedReceiver | None = getattr(_thread_state, "tapped", None)
    if tapped is None:
        return _ORIGINAL_GET_DECODER(codec)
    return PassthroughDecoder(codec, tapped)


def install() -> None:
    """Check aiortc's internals and put the tap's seams in place. Idempotent.

    Receivers that are not tapped keep decoding with aiortc's decoders.

    Raises:
        AiortcInternalsError: if aiortc's internals moved.
    """
    if installed():
        return
    check_internals()
    _rx.get_decoder = _get_decoder
    _rx.decoder_worker = _decoder_worker


def uninstall() -> None:
    """Restore aiortc's own ``decoder_worker`` and ``get_decoder``. Idempotent."""
    _rx.get_decoder = _ORIGINAL_GET_DECODER
    _rx.decoder_worker = _ORIGINAL_DECODER_WORKER


def installed() -> bool:
    """Tell whether :func:`install` is in effect."""
    return _rx.decoder_worker is _decoder_worker and _rx.get_decoder is _get_decoder


_MAX_MISORDER: Final = 100
"""Packets this far behind the last one passed on are late; further behind, the sender restarted."""


class AudioPacketBuffer:
    """Stands in for aiortc's audio jitter buffer on a tapped receiver: every Opus packet is a whole frame.

    aiortc's audio buffer (16 packets, prefetch 4) holds frames back until four more have arrived (80 ms of
    added latency) and lets out at most one frame per packet received. After a lost packet it stays full, so
    each later loss overflows it and throws away good packets: at 5 % random loss only ~74 % of packets came
    out. Nothing here decodes, so nothing needs a smooth stream: pass each packet on as it comes, drop
    duplicates and packets older than the last one passed on (the WebM muxer needs rising timestamps).
    """

    capacity: Final = 16
    """Kept for aiortc, which reads it; nothing is buffered."""

    def __init__(self) -> None:
        self._last: int | None = None

    def add(self, packet: Any) -> tuple[bool, Any]:
        """Take one depayloaded RTP packet; answer ``(pli_flag, frame or None)`` like ``JitterBuffer.add``."""
        seq: int = packet.sequence_number
        if self._last is not None:
            behind = (self._last - seq) & 0xFFFF
            if behind < _MAX_MISORDER:
                return False, None  # a duplicate, or late: a newer packet has already been passed on
        # (A packet far behind is a restarted stream, as aiortc's buffer also takes it: start over from it.)
        self._last = seq
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)


class SliceRateCounter:
    """aiortc's ``rate.RateCounter`` (1 ms buckets over a window), same answers, old buckets cleared in slices.

    aiortc's receive-side bitrate estimator (REMB) feeds every video RTP packet through ``RateCounter.add`` and
    ``rate``, whose ``_erase_old`` steps through the buckets one Python loop iteration per elapsed millisecond:
    1000 iterations a second per video receiver, and a whole window's worth after any stall of the event loop.
    ``bench/receive_path.py`` found it the largest single item of the loop's profile (~25 % at N = 32 on a busy
    machine). Here the buckets are two lists of ints and the elapsed ones are summed and zeroed by slices.
    """

    def __init__(self, window_size: int, scale: int = 8000) -> None:
        self._window_size = window_size
        self._scale = scale
        self.reset()

    def reset(self) -> None:
        """Forget everything counted (aiortc calls it when the rate becomes unknown)."""
        self._counts = [0] * self._window_size
        self._values = [0] * self._window_size
        self._origin_index = 0
        self._origin_ms: int | None = None
        self._total_count = 0
        self._total_value = 0

    def add(self, value: int, now_ms: int) -> None:
        """Count ``value`` (bytes) arriving at ``now_ms``."""
        if self._origin_ms is None:
            self._origin_ms = now_ms
        else:
            self._erase_old(now_ms)
        index = (self._origin_index + now_ms - self._origin_ms) % self._window_size
        self._counts[index] += 1
        self._values[index] += value
        self._total_count += 1
        self._total_value += value

    def rate(self, now_ms: int) -> int | None:
        """The rate over the window ending at ``now_ms`` (bits/s with the default scale), or None."""
        if self._origin_ms is not None:
            self._erase_old(now_ms)
            active = now_ms - self._origin_ms + 1
            if self._total_count > 0 and active > 1:
                return round(self._scale * self._total_value / active)
        return None

    def _erase_old(self, now_ms: int) -> None:
        origin_ms = self._origin_ms
        assert origin_ms is not None
        size = self._window_size
        steps = now_ms - size + 1 - origin_ms
        if steps <= 0:
            return
        if steps >= size:
            self._counts = [0] * size
            self._values = [0] * size
            self._total_count = self._total_value = 0
        else:
            start = self._origin_index
            end = start + steps
            spans = ((start, end),) if end <= size else ((start, size), (0, end - size))
            counts, values = self._counts, self._values
            for a, b in spans:
                self._total_count -= sum(counts[a:b])
                self._total_value -= sum(values[a:b])
                counts[a:b] = values[a:b] = [0] * (b - a)
        self._origin_index = (self._origin_index + steps) % size
        self._origin_ms = origin_ms + steps


Remb = tuple[int, list[int]]
"""An estimate of aiortc's ``RemoteBitrateEstimator``: bits per second and the SSRCs it covers."""


class RembLimiter:
    """Lets a receiver's REMB estimates out at libwebrtc's pace: one per 200 ms at most, a drop of 3 % at once.

    aiortc's ``RemoteBitrateEstimator.add`` returns an estimate every 500 ms, and on *every* packet while its
    over-use detector fires; the receiver sends each as a REMB (SRTCP protect, ``sendto``) from inside its
    packet handler. A receiver that is late reading its socket sees packets bunch up, which the detector reads
    as over-use: then every video packet cost an RTCP packet out (``sendto`` was the largest item of the loop's
    profile in ``bench/receive_path.py``). libwebrtc's receiver sends a REMB at most every 200 ms unless the
    estimate fell below 97 % of the last one sent, and so does this: an estimate in between is not sent (the
    estimator still counts every packet; its next estimate goes out).

    Args:
        add: The estimator's own ``add``.
    """

    def __init__(self, add: Callable[..., Remb | None]) -> None:
        self._add = add
        self._sent_ms: int | None = None
        self._sent_bitrate = 0
        self.held = 0
        """Estimates not sent."""

    def add(self, arrival_time_ms: int, abs_send_time: int, payload_size: int, ssrc: int) -> Remb | None:
        """``RemoteBitrateEstimator.add``: feed the estimator; answer its estimate only when it is to be sent."""
        remb = self._add(
            arrival_time_ms=arrival_time_ms, abs_send_time=abs_send_time, payload_size=payload_size, ssrc=ssrc
        )
        if remb is None:
            return None
        bitrate = remb[0]
        if (
            self._sent_ms is None
            or arrival_time_ms - self._sent_ms >= REMB_INTERVAL_MS
            or bitrate < self._sent_bitrate * REMB_DROP
        ):
            self._sent_ms, self._sent_bitrate = arrival_time_ms, bitrate
            return remb
        self.held += 1
        return None


def tap_receiver(receiver: RTCRtpReceiver, *, keyframe_interval: float = DEFAULT_KEYFRAME_INTERVAL) -> TappedReceiver:
    """Make a receiver's track yield :class:`EncodedFrame` objects instead of decoded frames.

    Call it from the peer connection's ``"track"`` event (or anywhere after ``setRemoteDescription`` created
    the track and before the connection is established). Installs the seams if needed.

    Args:
        receiver: The receiver to tap.
        keyframe_interval: Minimum seconds between two PLIs sent for this track.

    Returns:
        The tap state: keyframe requests, latest sender report, counters.

    Raises:
        AiortcInternalsError: if aiortc's internals moved.
        RuntimeError: if the receiver has no track yet or has already started decoding.
    """
    install()
    rx: Any = receiver
    track = rx.track
    if track is None:
        raise RuntimeError("receiver has no track yet: tap it from the 'track' event")
    if getattr(rx, _RX_STARTED):
        raise RuntimeError("receiver already started decoding: tap it from the 'track' event")
    tapped = TappedReceiver(receiver, track.kind, keyframe_interval)
    if track.kind == "audio":
        if not hasattr(rx, _RX_JITTER_BUFFER):
            raise AiortcInternalsError(f"RTCRtpReceiver has no {_RX_JITTER_BUFFER} to replace")
        setattr(rx, _RX_JITTER_BUFFER, AudioPacketBuffer())
    estimator = getattr(rx, _RX_REMB, None)
    if estimator is not None and FAST_RATE_COUNTER:
        counter = estimator.incoming_bitrate
        estimator.incoming_bitrate = SliceRateCounter(counter._window_size, counter._scale)
    if estimator is not None and REMB_LIMIT:
        # An instance attribute shadows the method: the receiver calls __remote_bitrate_estimator.add(...).
        estimator.add = RembLimiter(estimator.add).add
    with _tapped_lock:
        _tapped_queues[track._queue] = tapped
    if LOOP_DELIVERY:
        setattr(rx, _RX_DECODER_QUEUE, LoopDelivery(tapped, track._queue))

    original: Callable[[Any], Awaitable[None]] = rx._handle_rtcp_packet

    async def handle_rtcp_packet(packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            tapped._on_sender_report(packet)
        await original(packet)

    # An instance attribute shadows the method: aiortc's DTLS transport calls
    # recipient._handle_rtcp_packet(packet) by attribute lookup.
    rx._handle_rtcp_packet = handle_rtcp_packet
    return tapped


def relay_keyframe_requests(sender: RTCRtpSender, callback: Callable[[], object]) -> None:
    """Route PLI and FIR received for a forwarding sender to ``callback``.

    aiortc's sender answers a PLI/FIR by asking its encoder for a keyframe, but a sender fed with encoded
    packets has no encoder: the request has to go to the publisher instead (rate-limited there).

    Args:
        sender: The sender that forwards a publisher's encoded frames.
        callback: Called on the event loop for every PLI or FIR received.
    """
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise AiortcInternalsError("RTCRtpSender._send_keyframe is missing")

    def send_keyframe() -> None:
        callback()

    tx: Any = sender
    tx._send_keyframe = send_keyframe
