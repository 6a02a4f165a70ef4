import pytest

from roomtape.webhooks.videosdk_events import TRACK_RECORDING_EVENTS, FileDetail, track_recording_event

IDS = {"meeting_id": "jvsg-8rjn-j304", "session_id": "613731342f27f56e4fc4b6d0", "participant_id": "abcd"}


def test_every_event_has_the_seed_shape() -> None:
    for event in TRACK_RECORDING_EVENTS:
        files = [FileDetail("/encoded/videos/a.webm", "https://cdn.example/a.webm")]
        body = track_recording_event(event, kind="audio", files=files, **IDS)  # type: ignore[arg-type]
        data = {"meetingId": "jvsg-8rjn-j304", "sessionId": "613731342f27f56e4fc4b6d0", "participantId": "abcd"}
        expected: dict[str, object] = {**data, "kind": "audio"}
        if event == "participant-track-recording-stopped":
            expected["fileDetails"] = [{"filePath": "/encoded/videos/a.webm", "fileUrl": "https://cdn.example/a.webm"}]
        assert body == {"webhookType": event, "data": expected}


def test_stopped_needs_file_details() -> None:
    with pytest.raises(ValueError):
        track_recording_event("participant-track-recording-stopped", kind="video", **IDS)
