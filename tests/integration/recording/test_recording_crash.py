"""SIGKILL a server while it records, start it again: the files are repaired and the recordings move on."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest
from tests.integration.media.roomtape_media_peers import read_counter
from tests.integration.recording.recording_server import LiveServer, live_server, wait_for

from roomtape.recording.manifest import load
from roomtape.recording.repair import needs_repair

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[3]

# A server and a publisher in one process: records alice's audio and video until it is killed, printing the
# publisher's video counter (and the time) every 100 ms.
SERVER_SCRIPT = """
import asyncio, json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import httpx
from tests.integration.recording.recording_server import live_server, open_meeting, publish, wait_for

async def main():
    async with live_server(Path(sys.argv[1])) as srv:
        room = await open_meeting(srv, "alice")
        publisher = await publish(room, "alice")
        ids = {}
        async with httpx.AsyncClient(base_url=srv.base_url) as http:
            for kind in ("audio", "video"):
                r = await http.post("/v2/recordings/participant/track/start", headers=srv.headers,
                    json={"roomId": room.meeting.id, "participantId": "alice", "kind": kind, "webhookUrl": "http://127.0.0.1:9/"})
                ids[kind] = r.json()["recordingId"]
        for rid in ids.values():
            await wait_for(lambda rid=rid: _recording(srv, rid), 10)
        print(json.dumps({"ids": ids, "session": room.session_id, "alice": room.pid("alice")}), flush=True)
        while True:
            print(publisher.video.counter, time.time(), flush=True)
            await asyncio.sleep(0.1)

async def _recording(srv, rid):
    return (await srv.recording(rid)).status == "RECORDING"

asyncio.run(main())
"""


def run_and_kill(tmp_path: Path, extra_env: dict[str, str] | None = None) -> tuple[dict[str, object], str]:
    """Run the recording server for 3 s after recording started, then SIGKILL it."""
    env = {**os.environ, "ROOMTAPE_ICE_HOST_ADDRESSES": "127.0.0.1", **(extra_env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER_SCRIPT, str(tmp_path), str(REPO)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    header = proc.stdout.readline()
    assert header, "the recording server did not start"
    deadline = time.monotonic() + 3.0
    last = ""
    while time.monotonic() < deadline:
        last = proc.stdout.readline() or last
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    return json.loads(header), last


async def test_sigkill_while_recording_then_restart_repairs_files(tmp_path: Path) -> None:
    info, last = await asyncio.to_thread(run_and_kill, tmp_path)
    counter_at_kill, killed_at = int(last.split()[0]), float(last.split()[1])
    alice, session = str(info["alice"]), str(info["session"])
    ids: dict[str, str] = dict(info["ids"])  # type: ignore[call-overload]
    local_video = tmp_path / "recordings" / ids["video"] / session / alice / "video"
    assert any(needs_repair(p) for p in local_video.glob("*.webm"))  # the kill left half-written files

    async with live_server(tmp_path) as srv:  # start-up recovers, then the upload job uploads
        for rid in ids.values():
            await wait_for(lambda rid=rid: _status_is(srv, rid, ("UPLOADED", "ERRORED")), 20, "upload")
            recording = await srv.recording(rid)
            assert recording.status == "UPLOADED", recording.error
            assert recording.stop_reason is not None and recording.stop_reason["reason"] == "INTERNAL_ERROR"
            files = await srv.files(rid)
            assert files and all(f.status == "uploaded" for f in files)
            app_id = recording.app_id
        stopped = [e.payload for e in await srv.events("participant-track-recording-stopped")]
        assert {p["data"]["kind"] for p in stopped} == {"audio", "video"}

    # Uploaded to the default storage under the app id (no bucketDirPath), manifests beside the files.
    video_dir = tmp_path / "storage" / app_id / session / alice / "video"
    audio_dir = tmp_path / "storage" / app_id / session / alice / "audio"

    # Video: decodes from a keyframe to the last flushed frame; at most 1.5 s lost.
    (segment,) = load(video_dir).segments
    assert segment.status == "complete"
    path = video_dir / segment.file
    assert not needs_repair(path)
    with av.open(str(path)) as container:
        counters = [read_counter(f) for f in container.decode(video=0)]
    assert len(counters) == segment.frames
    assert all(b > a for a, b in itertools.pairwise(counters))
    assert counters[-1] >= counter_at_kill - 1.5 * 30

    # Audio: decodes, OpusHead kept, ends within 1.5 s of the kill.
    (asegment,) = load(audio_dir).segments
    with av.open(str(audio_dir / asegment.file)) as container:
        stream = container.streams.audio[0]
        assert bytes(stream.codec_context.extradata or b"").startswith(b"OpusHead")
        samples = sum(f.samples for f in container.decode(stream))
    assert samples == asegment.frames * 960
    assert asegment.end_epoch_ms / 1000 >= killed_at - 1.5


async def _status_is(srv: LiveServer, recording_id: str, statuses: tuple[str, ...]) -> bool:
    return (await srv.recording(recording_id)).status in statuses
