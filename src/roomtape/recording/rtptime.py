from dataclasses import dataclass

_WRAP = 1 << 32
_HALF = 1 << 31
_MASK = _WRAP - 1


def rtp_diff(later: int, earlier: int) -> int:
    """Signed distance between two 32-bit RTP timestamps, assuming it is under 2**31.

    Args:
        later: A 32-bit RTP timestamp.
        earlier: Another 32-bit RTP timestamp.

    Returns:
        `later - earlier` taken modulo 2**32 into [-2**31, 2**31).
    """
    return ((later - earlier + _HALF) & _MASK) - _HALF


class RtpUnwrapper:
    """Turns 32-bit RTP timestamps into a monotonic-ish 64-bit timeline.

    The first timestamp is kept as is; each next one is placed at the closest point to the
    previous one modulo 2**32, so a wrap moves forwards and a slightly late (reordered) frame
    lands slightly behind rather than 2**32 ahead.
    """

    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last: int | None = None

    def unwrap(self, timestamp: int) -> int:
        """Place a 32-bit timestamp on the unwrapped timeline.

        Args:
            timestamp: A 32-bit RTP timestamp.

        Returns:
            The unwrapped timestamp (may exceed 2**32, or go negative after an early reorder).
        """
        last = self._last
        if last is None:
            self._last = timestamp & _MASK
            return self._last
        value = last + ((((timestamp - last) + _HALF) & _MASK) - _HALF)
        if value > last:
            self._last = value
        return value


@dataclass(frozen=True, slots=True)
class ClockMapping:
    """One RTP↔wall-clock pair from an RTCP sender report (RFC 3550 §6.4.1)."""

    ntp_epoch_seconds: float
    """The sender's NTP time, converted to seconds since the Unix epoch."""
    rtp_timestamp: int
    """The 32-bit RTP timestamp that corresponds to that instant."""

    def wallclock(self, rtp_timestamp: int, clock_rate: int) -> float:
        """Map an RTP timestamp to the sender's wall clock.

        Args:
            rtp_timestamp: An unwrapped or 32-bit RTP timestamp within 2**31 of the report's.
            clock_rate: The RTP clock rate of the stream.

        Returns:
            Seconds since the Unix epoch.
        """
        return self.ntp_epoch_seconds + rtp_diff(rtp_timestamp & _MASK, self.rtp_timestamp) / clock_rate
