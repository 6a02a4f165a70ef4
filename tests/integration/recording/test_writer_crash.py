import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from tests.integration.recording.recording_media import (
    FPS,
    audio_frames,
    dominant_hz,
    encode_opus,
    encode_vp8,
    read_counter,
    video_frames,
)

from roomtape.recording.repair import RepairError, needs_repair, repair

# Writes both tracks in real time, printing each frame written, until it is killed.
WRITER_SCRIPT = """
import pickle, sys, time
from pathlib import Path
from roomtape.recording.writer import TrackWriter

video, audio = pickle.loads(Path(sys.argv[1]).read_bytes())
out = Path(sys.argv[2])
writers = {"v": TrackWriter(out / "video.webm"), "a": TrackWriter(out / "audio.webm")}
queue = sorted([(f.arrival, "v", f) for f in video] + [(f.arrival, "a", f) for f in audio], key=lambda x: x[0])
print("ready", flush=True)
start, t0 = time.monotonic(), queue[0][0]
for arrival, kind, frame in queue:
    delay = (arrival - t0) - (time.monotonic() - start)
    if delay > 0:
        time.sleep(delay)
    writers[kind].write(frame)
    print(kind, flush=True)
time.sleep(60)
"""

RUN_SECONDS = 2.5


@pytest.fixture(scope="module")
def killed_writer(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, int]:
    """Run the writer in a subprocess, SIGKILL it after 2.5 s; return its dir and frames written."""
    tmp = tmp_path_factory.mktemp("crash")
    t0 = 1_700_000_000.0
    video = video_frames(encode_vp8(8 * FPS), (1 << 32) - 90_000, t0)
    audio = audio_frames(encode_opus(400), (1 << 32) - 48_000, t0)
    (tmp / "frames.pickle").write_bytes(pickle.dumps((video, audio)))
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(tmp / "frames.pickle"), str(tmp)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(RUN_SECONDS)
    os.kill(proc.pid, signal.SIGKILL)
    rest = proc.communicate(timeout=10)[0].split()
    assert proc.returncode == -signal.SIGKILL
    return tmp, rest.count("v"), rest.count("a")


def test_killed_video_file_is_repaired(killed_writer: tuple[Path, int, int]) -> None:
    tmp, written, _ = killed_writer
    path = tmp / "video.webm"
    assert written >= 2 * FPS
    assert needs_repair(path)
    result = repair(path)
    assert not needs_repair(path)
    assert result.frames >= written - FPS  # at most about a second lost
    assert result.duration_seconds == pytest.approx(result.frames / FPS, abs=1.5 / FPS)
    with av.open(str(path)) as container:
        assert container.duration is not None
        decoded = [read_counter(f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    assert decoded == list(range(result.frames))


def test_killed_audio_file_is_repaired(killed_writer: tuple[Path, int, int]) -> None:
    tmp, _, written = killed_writer
    path = tmp / "audio.webm"
    out = tmp / "audio-repaired.webm"
    assert written >= 100
    result = repair(path, out)
    assert result.path == out and needs_repair(path) and not needs_repair(out)
    assert result.frames >= written - 50
    assert result.duration_seconds == pytest.approx(result.frames * 0.02, abs=0.001)
    with av.open(str(out)) as container:
        stream = container.streams.audio[0]
        extradata = stream.codec_context.extradata
        assert extradata is not None and extradata.startswith(b"OpusHead")
        samples = np.concatenate([f.to_ndarray()[0] for f in container.decode(stream)])
    assert len(samples) == result.frames * 960
    assert dominant_hz(samples[4800:]) == pytest.approx(440, abs=2)


def test_repair_refuses_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.webm"
    path.write_bytes(b"not a webm file at all" * 10)
    with pytest.raises(RepairError):
        repair(path)
    assert not (tmp_path / "garbage.webm.repair.tmp").exists()
