import roomtape.recording


def test_public_surface_is_exactly_what_is_meant() -> None:
    assert sorted(roomtape.recording.__all__) == [
        "ClockMapping",
        "CodecName",
        "EncodedFrame",
        "Gap",
        "RepairError",
        "RepairResult",
        "RtpUnwrapper",
        "SegmentEntry",
        "SegmentStats",
        "TrackKind",
        "TrackManifest",
        "TrackRecorder",
        "TrackWriter",
        "needs_repair",
        "repair",
        "track_directory",
    ]
    for name in roomtape.recording.__all__:
        assert hasattr(roomtape.recording, name)


def test_recording_does_not_import_the_web_framework_or_aiortc() -> None:
    import subprocess
    import sys

    code = (
        "import sys, roomtape.recording; print(sorted(m for m in ('fastapi','starlette','aiortc') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
