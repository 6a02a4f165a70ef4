import shutil
import subprocess
import sys
from pathlib import Path

from tests.integration.recording.recording_media import audio_frames, encode_opus

from roomtape.recording.manifest import load
from roomtape.recording.repair import needs_repair
from roomtape.recording.segmenter import TrackRecorder

BIN = Path(sys.executable).parent


def test_roomtape_repair_finalizes_half_written_files_and_manifest(tmp_path: Path) -> None:
    recorder = TrackRecorder(tmp_path / "rec", "S1", "P1", "audio")
    for frame in audio_frames(encode_opus(150), 1000, 1_700_000_000.0):
        recorder.write(frame)
    # Copy the file while its writer still has it open: what a killed process leaves behind.
    (segment,) = recorder.segments
    source = recorder.directory / segment.file
    crashed = tmp_path / "crashed" / "S1" / "P1" / "audio"
    crashed.mkdir(parents=True)
    shutil.copy(source, crashed / segment.file)
    shutil.copy(recorder.directory / "manifest.json", crashed / "manifest.json")
    recorder.close()
    assert needs_repair(crashed / segment.file) and load(crashed).segments[0].status == "recording"

    out = subprocess.run([str(BIN / "roomtape"), "repair", str(tmp_path / "crashed")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert f"repaired {crashed / segment.file}" in out.stdout
    assert not needs_repair(crashed / segment.file)
    (entry,) = load(crashed).segments
    assert entry.status == "complete" and 0 < entry.frames <= 150
    assert entry.end_epoch_ms - entry.start_epoch_ms == entry.frames * 20
