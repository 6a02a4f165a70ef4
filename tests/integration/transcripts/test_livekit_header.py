"""The ``header`` part of a LiveKit Agents upload, built with ``livekit-protocol``'s own message class, read back by
roomtape's small protobuf reader; and the ``audio`` part's check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from livekit.protocol import metrics as proto_metrics
from tests.integration.transcripts.livekit_media import ogg_opus, place, tone

from roomtape.errors import InvalidInput
from roomtape.transcripts.livekit import parse_header, probe_ogg


def test_every_header_field_livekit_sends_is_read() -> None:
    header = proto_metrics.MetricsRecordingHeader(
        room_id="RM_abc",
        room_name="support-line",
        job_id="AJ_123",
        simulated=True,
        redaction_enabled=True,
        duration=12_345,
        session_summary=json.dumps({"room": "support-line", "agent_name": "helper", "sdk_version": "1.8.9"}),
        room_tags={"team": "blue"},
    )
    header.start_time.FromMilliseconds(1_790_000_000_250)
    header.room_start_time.FromMilliseconds(1_790_000_000_000)
    got = parse_header(header.SerializeToString())
    assert (got.room_id, got.room_name, got.job_id) == ("RM_abc", "support-line", "AJ_123")
    assert got.simulated and got.redaction_enabled and got.duration_ms == 12_345
    assert got.start_time == pytest.approx(1_790_000_000.25) and got.room_start_time == pytest.approx(1_790_000_000)
    assert got.room_tags == {"team": "blue"} and got.session_summary["agent_name"] == "helper"


def test_an_unset_start_time_and_a_summary_that_is_not_json() -> None:
    header = proto_metrics.MetricsRecordingHeader(room_id="RM_x", session_summary="not json")
    got = parse_header(header.SerializeToString())
    assert got.start_time is None and got.session_summary == {} and got.room_id == "RM_x"


@pytest.mark.parametrize("data", [b"", b"\x0a\xff", b"\x0a\x05ab", b"\x07", b"\x22\x02\x08"])
def test_a_malformed_header_is_invalid_input(data: bytes) -> None:
    with pytest.raises(InvalidInput):
        parse_header(data)


def test_ogg_audio_is_probed_without_decoding() -> None:
    audio = ogg_opus(place(2, [(0.5, tone(300, 1))]), place(2, [(1.0, tone(600, 0.5))]))
    found = probe_ogg(audio)
    assert (found.codec, found.channels, found.sample_rate) == ("opus", 2, 48000)
    assert found.duration == pytest.approx(2.0, abs=0.03) and found.packets >= 99
    for bad in (b"RIFF" + bytes(100), audio[:60], b"OggS" + bytes(500), audio[:27] + np.random.bytes(4000)):
        with pytest.raises(InvalidInput):
            probe_ogg(bad)
