"""A minimum-interval rate limiter for keyframe requests.

Every PLI makes the publisher send a keyframe, which is 5-20x larger than an inter frame; a burst of
subscribers (or a lossy subscriber asking on every lost picture) must not turn the publisher's stream into
a keyframe stream. One request per interval per track is enough: the keyframe it causes reaches every
subscriber that is waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allows an action at most once per ``interval`` seconds.

    Args:
        interval: Minimum number of seconds between two allowed actions.
        clock: Monotonic clock returning seconds; injectable for tests.
    """

    __slots__ = ("_clock", "_interval", "_last")

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        self._interval = interval
        self._clock = clock
        self._last: float | None = None

    @property
    def interval(self) -> float:
        """The minimum number of seconds between two allowed actions."""
        return self._interval

    def allow(self) -> bool:
        """Take the slot if the interval has passed since the last allowed action.

        Returns:
            True if the action may happen now (the slot is then consumed), False if it is too early.
        """
        now = self._clock()
        if self._last is not None and now - self._last < self._interval:
            return False
        self._last = now
        return True

    def remaining(self) -> float:
        """Seconds until :meth:`allow` would return True (0 if it would now)."""
        if self._last is None:
            return 0.0
        return max(0.0, self._interval - (self._clock() - self._last))
