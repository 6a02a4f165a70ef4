from roomtape.recording.rtptime import ClockMapping, RtpUnwrapper, rtp_diff

WRAP = 1 << 32


def test_unwrap_is_identity_without_wrap() -> None:
    unwrapper = RtpUnwrapper()
    assert [unwrapper.unwrap(t) for t in (1000, 4000, 7000)] == [1000, 4000, 7000]


def test_unwrap_continues_across_the_wrap_in_the_middle() -> None:
    unwrapper = RtpUnwrapper()
    start = WRAP - 3 * 3000
    raw = [(start + i * 3000) % WRAP for i in range(7)]
    assert raw[3] == 0  # the wrap lands mid-sequence
    assert [unwrapper.unwrap(t) for t in raw] == [start + i * 3000 for i in range(7)]


def test_unwrap_places_a_late_frame_behind_even_across_the_wrap() -> None:
    unwrapper = RtpUnwrapper()
    assert unwrapper.unwrap(WRAP - 960) == WRAP - 960
    assert unwrapper.unwrap(960) == WRAP + 960
    assert unwrapper.unwrap(0) == WRAP  # reordered: behind the last, not 2**32 ahead
    assert unwrapper.unwrap(WRAP - 1920) == WRAP - 1920  # late from before the wrap
    assert unwrapper.unwrap(1920) == WRAP + 1920


def test_unwrap_survives_several_wraps() -> None:
    unwrapper = RtpUnwrapper()
    step = 1 << 30
    values = [unwrapper.unwrap((i * step) % WRAP) for i in range(10)]
    assert values == [i * step for i in range(10)]


def test_rtp_diff_is_signed_modulo_2_32() -> None:
    assert rtp_diff(5, WRAP - 5) == 10
    assert rtp_diff(WRAP - 5, 5) == -10
    assert rtp_diff(100, 100) == 0


def test_clock_mapping_across_wrap() -> None:
    mapping = ClockMapping(ntp_epoch_seconds=1_700_000_000.0, rtp_timestamp=WRAP - 45000)
    assert mapping.wallclock(WRAP - 45000, 90000) == 1_700_000_000.0
    assert mapping.wallclock(45000, 90000) == 1_700_000_001.0  # raw, after the wrap
    assert mapping.wallclock(WRAP + 45000, 90000) == 1_700_000_001.0  # unwrapped
    assert mapping.wallclock(WRAP - 90000, 90000) == 1_699_999_999.5
