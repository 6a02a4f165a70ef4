from __future__ import annotations

import pytest

from roomtape.media.ratelimit import RateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_one_action_per_interval() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.3, clock=clock)
    assert limiter.allow()
    assert not limiter.allow()
    clock.now += 0.29
    assert not limiter.allow()
    assert limiter.remaining() == pytest.approx(0.01)
    clock.now += 0.01
    assert limiter.allow()
    assert limiter.remaining() == pytest.approx(0.3)


def test_refused_attempts_do_not_push_the_window() -> None:
    clock = FakeClock()
    limiter = RateLimiter(0.3, clock=clock)
    assert limiter.allow()
    for _ in range(10):
        clock.now += 0.1
        limiter.allow()
    # allowed at 100.0, 100.3, 100.6, 100.9: refusals in between changed nothing
    clock.now = 101.2
    assert limiter.allow()


def test_zero_interval_always_allows_and_negative_is_rejected() -> None:
    limiter = RateLimiter(0.0)
    assert limiter.allow() and limiter.allow()
    assert limiter.remaining() == 0.0
    with pytest.raises(ValueError):
        RateLimiter(-1)
