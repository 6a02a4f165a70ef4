"""``Subscription.take``: the recorder's timer-driven drain of a subscription nobody awaits."""

from __future__ import annotations

from tests.unit.media.test_media_forward import audio, video

from roomtape.media.forward import Subscription


def test_take_returns_everything_queued_in_order_and_empties_the_queue() -> None:
    sub = Subscription("audio", max_frames=10)
    assert sub.take() == []
    for n in range(5):
        sub.push(audio(n))
    assert [f.pts // 960 for f in sub.take()] == [0, 1, 2, 3, 4]
    assert len(sub) == 0 and sub.take() == []
    sub.push(audio(5))
    assert [f.pts // 960 for f in sub.take()] == [5]


def test_take_keeps_the_keyframe_and_overflow_rules_of_push() -> None:
    requests: list[int] = []
    sub = Subscription("video", max_frames=3, on_keyframe_needed=lambda: requests.append(1))
    sub.push(video(0))  # before the first keyframe: skipped
    sub.push(video(1, keyframe=True))
    sub.push(video(2))
    assert [f.pts // 3000 for f in sub.take()] == [1, 2]
    for n in range(3, 7):  # nobody took these: the fourth overflows, the backlog goes, a keyframe is asked for
        sub.push(video(n))
    assert sub.take() == [] and requests == [1] and sub.needs_keyframe
    sub.push(video(7, keyframe=True))
    assert [f.pts // 3000 for f in sub.take()] == [7]
