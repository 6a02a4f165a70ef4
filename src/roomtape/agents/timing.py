"""RTCP sender reports on the capture clock for the Python client's senders.

A sender report pairs an RTP timestamp with the wall-clock time of the same instant; receivers (roomtape's
recorder, browsers) line audio and video up with it. aiortc pairs each frame's RTP timestamp with the time its
packets were *sent*, after encoding in a worker thread: video then looks later than audio by the video
encoder's latency (tens of milliseconds on a busy machine; 50-90 ms seen with two shared cores), and a
flash and a beep captured together end more than a video frame apart in the composite. Browsers pair it with
the *capture* time. :func:`use_capture_clock` makes an aiortc sender do the same: the time stored for the
report is the capture time of the frame being sent (:attr:`roomtape.agents.tracks.MuteGate.captured_at`, from
the frame's timestamp; frames are encoded and sent one at a time, in order).
"""

from __future__ import annotations

import datetime
from typing import Any

from aiortc import RTCRtpSender
from aiortc.clock import datetime_to_ntp

from roomtape.agents.tracks import MuteGate

__all__ = ["use_capture_clock"]


def _ntp(epoch_seconds: float) -> int:
    return datetime_to_ntp(datetime.datetime.fromtimestamp(epoch_seconds, datetime.UTC))


class _CaptureClockSender(RTCRtpSender):
    """An ``RTCRtpSender`` whose sender reports carry the capture time of the latest frame sent.

    aiortc stores ``self.__ntp_timestamp = clock.current_ntp_time()`` right after sending a frame's packet and
    reports that value; this data descriptor on the (name-mangled) attribute replaces it with the capture time.
    """

    _roomtape_gate: MuteGate | None = None

    @property
    def _RTCRtpSender__ntp_timestamp(self) -> int:
        value: int = self.__dict__.get("_roomtape_ntp", 0)
        return value

    @_RTCRtpSender__ntp_timestamp.setter
    def _RTCRtpSender__ntp_timestamp(self, value: int) -> None:
        gate = self._roomtape_gate
        captured = gate.captured_at if gate is not None else None
        self.__dict__["_roomtape_ntp"] = value if captured is None or value == 0 else _ntp(captured)


def use_capture_clock(sender: Any, gate: MuteGate) -> None:
    """Make an aiortc sender (of ``gate``'s frames) report the capture clock; call before it starts sending.

    Args:
        sender: The transceiver's ``RTCRtpSender``.
        gate: The track it sends; its ``captured_at`` is the capture time of the frame being sent.
    """
    if type(sender) is RTCRtpSender:
        ntp = getattr(sender, "_RTCRtpSender__ntp_timestamp", 0)
        sender.__class__ = _CaptureClockSender
        sender.__dict__["_roomtape_ntp"] = ntp
    if isinstance(sender, _CaptureClockSender):
        sender._roomtape_gate = gate
