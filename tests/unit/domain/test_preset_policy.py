"""What a stored preset document condenses into (``policy_of``): the parts signaling and media enforce."""

from __future__ import annotations

from roomtape.domain.presets import DEFAULT_PRESETS, deep_merge, policy_of


def test_can_request_counts_as_not_allowed_and_recording_needs_can_record() -> None:
    # CAN_REQUEST has no request flow in roomtape, so a participant with it may not publish directly;
    # can_record is a plain boolean in the Cloudflare SDK (no CAN_REQUEST there), so it is taken as is.
    base = DEFAULT_PRESETS["group_call_host"]
    asked = deep_merge(
        base,
        {
            "permissions": {
                "can_record": False,
                "media": {
                    "audio": {"can_produce": "ALLOWED"},
                    "video": {"can_produce": "CAN_REQUEST"},
                    "screenshare": {"can_produce": "CAN_REQUEST"},
                },
            }
        },
    )
    policy = policy_of("asked", asked)
    assert (policy.publish_audio, policy.publish_video, policy.publish_screen) == (True, False, False)
    assert policy.record is False
    assert policy_of("group_call_host", base).record is True
