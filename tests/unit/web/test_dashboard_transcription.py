"""The recording page shows speech-to-text progress and failures (escaped: the error comes from a backend)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from roomtape.api.routers.dashboard import _templates


def _render(transcription: dict[str, Any] | None) -> str:
    rec = {
        "id": "r1",
        "status": "UPLOADED",
        "invoked_time": datetime(2026, 1, 1, tzinfo=UTC),
        "recording_duration": 12,
        "file_size": 1000,
        "transcription": transcription,
    }
    values: dict[str, Any] = {"downloads": [], "timeline": [], "participants": [], "layouts": [], "formats": []}
    return _templates.get_template("recording.html").render(
        request_path="/", user=None, rec=rec, page_json="{}", active=[], final=[], **values
    )


def test_failed_transcription_is_shown_with_its_escaped_reason() -> None:
    html = _render(
        {
            "status": "failed",
            "segments": 2,
            "segments_done": 1,
            "segments_failed": 1,
            "items": 3,
            "backend": "openai/whisper-1",
            "error": "<b>answered 503</b>",
        }
    )
    assert 'data-transcription="failed"' in html
    assert "1/2 audio segments, 1 failed" in html and "3 items" in html and "openai/whisper-1" in html
    assert "Transcription failed: &lt;b&gt;answered 503&lt;/b&gt;" in html


def test_done_transcription_and_none() -> None:
    html = _render({"status": "done", "segments": 0, "segments_done": 0, "items": 0, "note": "no audio recorded"})
    assert 'data-transcription="done"' in html and "no audio recorded" in html and "Transcription failed" not in html
    assert "data-transcription" not in _render(None)
