from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from roomtape.api.routers.realtimekit.schemas import AudioConfig
from roomtape.recording.meeting import compose_options, derive_compose


def test_agent_channel_map_renders_user_left_agent_right(tmp_path: Path) -> None:
    audio = AudioConfig.model_validate(
        {"channel": "stereo", "codec": "AAC", "channel_map": {"agent_participant_id": "agent-1"}}
    ).model_dump(exclude_none=True)
    settings, _ = derive_compose(audio_config=audio, video_config={"export_file": False})
    assert settings["channels"] == "agent_stereo" and settings["agent_participant_id"] == "agent-1"
    options = compose_options({"compose": settings}, tmp_path)
    assert options.channels == "agent_stereo" and options.agent_participant_id == "agent-1"


def test_opus_codec_gives_an_ogg_composite_and_export() -> None:
    audio = AudioConfig.model_validate({"codec": "OPUS", "export_file": True}).model_dump(exclude_none=True)
    settings, export = derive_compose(audio_config=audio, video_config={"export_file": False})
    assert settings["format"] == "ogg" and settings["layout"] == "audio_only" and export == "ogg"
    assert derive_compose(audio_config={"codec": "MP3"}, video_config={"export_file": False})[0]["format"] == "mp3"
    assert derive_compose(audio_config={}, video_config={"export_file": False})[0]["format"] == "aac"


def test_plain_stereo_and_mono_are_unchanged(tmp_path: Path) -> None:
    assert derive_compose(audio_config={"channel": "stereo"})[0]["channels"] == "stereo"
    mono, _ = derive_compose(audio_config={"channel": "mono", "channel_map": {"agent_participant_id": "a"}})
    assert mono["channels"] == "mono" and "agent_participant_id" not in mono
    with pytest.raises(ValidationError):
        AudioConfig.model_validate({"channel_map": {"right": "agent"}})  # the agent must be named


def test_video_config_fps_and_preset_reach_the_render(tmp_path: Path) -> None:
    from roomtape.api.routers.realtimekit.recordings import RecordingStart

    body = RecordingStart.model_validate({"meeting_id": "m", "video_config": {"fps": 15, "preset": "ultrafast"}})
    assert body.video_config is not None
    settings, _ = derive_compose(video_config=body.video_config.model_dump())
    options = compose_options({"compose": settings}, tmp_path)
    assert (options.fps, options.preset) == (15, "ultrafast")
    defaults = compose_options({"compose": derive_compose(video_config={"codec": "H264"})[0]}, tmp_path)
    assert (defaults.fps, defaults.preset) == (30, "superfast")  # ComposeOptions.preset (a0e1cec)
    for bad in ({"fps": 0}, {"fps": 61}, {"preset": "placebo"}):
        with pytest.raises(ValidationError):
            RecordingStart.model_validate({"meeting_id": "m", "video_config": bad})
