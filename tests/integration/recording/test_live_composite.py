"""The live compositor through the real server (a ``roomtape serve`` subprocess) with four aiortc publishers.

The composite is rendered while the meeting records (a render process per recording follows the track files);
two publishers are there from the start, two join during the recording and one leaves. The file decodes with
PyAV with the recorded duration and a frame count at the ``video_config.fps`` asked for, each participant's
colour is in the picture while they publish and not before they joined or after they left, and the same
recording rendered again from its files (``roomtape compose``) gives a file of the same length. The flash/beep
sync test (``test_composite_sync.py``) also runs through the live render, which is the server's default.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError
from av.video.frame import VideoFrame
from tests.conftest import Server, start_server, stop_server
from tests.integration.recording.test_composite_sync import (
    SERVER_ENV,
    cloudflare,
    download,
    recording,
    rows,
    wait_status,
)
from tests.integration.signaling.signaling_helpers import Api

from roomtape.agents import RoomClient
from roomtape.db.models import TrackFile

pytestmark = pytest.mark.timeout(300)

COLOURS = {"alice": (220, 40, 40), "bob": (40, 200, 40), "carol": (40, 40, 220), "dave": (220, 220, 40)}
FPS = 15


class ColourTrack(MediaStreamTrack):
    """A solid colour, 320x240 at 15 fps."""

    kind = "video"

    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        self._image = np.full((240, 320, 3), rgb, np.uint8)
        self._k = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        await asyncio.sleep(max(0.0, self._start + self._k / FPS - now))
        frame = VideoFrame.from_ndarray(self._image, format="rgb24")
        frame.pts, frame.time_base = self._k * (90000 // FPS), Fraction(1, 90000)
        self._k += 1
        return frame


class ToneTrack(MediaStreamTrack):
    """A quiet tone, 20 ms frames."""

    kind = "audio"

    def __init__(self, freq: float) -> None:
        super().__init__()
        self._freq = freq
        self._n = 0
        self._start: float | None = None

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        await asyncio.sleep(max(0.0, self._start + self._n * 0.02 - now))
        t = (self._n * 960 + np.arange(960)) / 48000
        pcm = (0.2 * np.sin(2 * np.pi * self._freq * t) * 32767).astype(np.int16).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 48000, self._n * 960, Fraction(1, 48000)
        self._n += 1
        return frame


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("live-composite")
    srv = start_server(tmp, f"sqlite+aiosqlite:///{tmp / 'roomtape.db'}", SERVER_ENV)
    try:
        yield srv
    finally:
        stop_server(srv)


async def join(server: Server, api: Api, meeting: str, name: str, freq: float) -> tuple[RoomClient, str]:
    pid, token = api.participant(meeting, name)
    client = RoomClient(server.base_url, token)
    await client.join()
    await client.publish(audio=ToneTrack(freq), video=ColourTrack(COLOURS[name]))
    return client, pid


def colours_seen(path: Path) -> tuple[list[float], dict[str, np.ndarray]]:
    """Per frame: its time, and for each participant the share of the picture in their colour."""
    times: list[float] = []
    shares: dict[str, list[float]] = {name: [] for name in COLOURS}
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            img = frame.to_ndarray(format="rgb24")[::4, ::4].astype(np.int16)
            times.append(float(frame.time or 0.0))
            for name, rgb in COLOURS.items():
                close = np.all(np.abs(img - np.array(rgb)) < 40, axis=2)
                shares[name].append(float(close.mean()))
    return times, {name: np.array(v) for name, v in shares.items()}


async def test_four_publishers_rendered_live_with_late_joiners_and_a_leaver(server: Server, tmp_path: Path) -> None:
    api = Api(server)
    meeting = api.meeting(title="live composite")
    clients: dict[str, tuple[RoomClient, str]] = {}
    pids: dict[str, str] = {}
    try:
        for i, name in enumerate(("alice", "bob")):
            clients[name] = await join(server, api, meeting, name, 400 + 200 * i)
            pids[name] = clients[name][1]
        await asyncio.sleep(1.5)
        async with cloudflare(server) as cf:
            started = await cf.realtime_kit.recordings.start_recordings(
                server.app_id,
                account_id=server.account_id,
                meeting_id=meeting,
                video_config={"codec": "H264", "width": 640, "height": 360, "fps": FPS, "preset": "ultrafast"},  # type: ignore[typeddict-unknown-key]
            )
            assert started.data is not None
            rid = started.data.id
            await wait_status(server, rid, ("RECORDING",), 20)
            await asyncio.sleep(3.0)
            clients["carol"] = await join(server, api, meeting, "carol", 800)
            pids["carol"] = clients["carol"][1]
            await asyncio.sleep(3.0)
            clients["dave"] = await join(server, api, meeting, "dave", 1000)
            pids["dave"] = clients["dave"][1]
            await asyncio.sleep(4.0)
            await clients.pop("bob")[0].leave()
            await asyncio.sleep(4.0)
            await cf.realtime_kit.recordings.pause_resume_stop_recording(
                rid, account_id=server.account_id, app_id=server.app_id, action="stop"
            )
            stopped = time.monotonic()
            rec = await wait_status(server, rid, ("UPLOADED", "ERRORED"), 120)
            print(f"stop -> {rec.status} in {time.monotonic() - stopped:.2f} s")
            assert rec.status == "UPLOADED", rec.error
            assert rec.download_url
            path = await download(rec.download_url, tmp_path / "live.mp4")
    finally:
        for client, _ in clients.values():
            await client.leave()

    live = rec.config["composite"]["live"]
    print(f"live render: {live}")
    assert not live["caught_up_from_files"]
    assert rec.started_time is not None and rec.stopped_time is not None
    recorded = (rec.stopped_time - rec.started_time).total_seconds()
    with av.open(str(path)) as container:
        duration = float(container.duration or 0) / av.time_base
        video = container.streams.video[0]
        assert (video.codec_context.name, video.codec_context.width, video.codec_context.height) == ("h264", 640, 360)
        assert container.streams.audio[0].codec_context.name == "aac"
    times, shares = colours_seen(path)
    print(f"composite {duration:.3f} s, {len(times)} frames; recorded {recorded:.3f} s")
    assert abs(duration - recorded) <= 0.1
    assert abs(len(times) - recorded * FPS) <= 2
    assert sorted(rec.config["composite"]["participants"]) == sorted(pids.values())

    # Each participant's video from the track files, placed on the composite's clock (no pause: start = 0).
    files = await rows(server, TrackFile, TrackFile.recording_id == rid, TrackFile.kind == "video")
    names = {pid: name for name, pid in pids.items()}
    origin = rec.started_time.timestamp()
    frame_times = np.array(times)
    for pid, name in names.items():
        mine = [f for f in files if f.participant_id == pid]
        first = min(f.started_at.timestamp() for f in mine) - origin
        last = max(f.ended_at.timestamp() for f in mine) - origin
        inside = (frame_times > first + 0.5) & (frame_times < min(last, recorded) - 0.5)
        outside = (frame_times < first - 0.3) | (frame_times > last + 0.3)
        print(f"{name}: media {first:.2f}..{last:.2f} s, shown in {np.mean(shares[name][inside] > 0.05):.0%} of it")
        assert inside.sum() > FPS, name
        assert np.mean(shares[name][inside] > 0.05) >= 0.95, name  # their tile, in their colour
        if outside.any():
            assert np.mean(shares[name][outside] > 0.05) <= 0.02, name  # no tile before they joined / after they left

    # The same recording rendered again from its files: the renderer's other driver, same length.
    again = await asyncio.to_thread(server.cli, "compose", rid, "--layout", "grid")
    assert again.returncode == 0, again.stderr
    assert "UPLOADED" in again.stdout, again.stdout
    redone = await recording(server, rid)
    stored = await asyncio.to_thread(lambda: list((server.data_dir / "storage").rglob(redone.output_file_name)))
    assert stored, redone.output_file_name
    with av.open(str(stored[0])) as container:
        assert abs(float(container.duration or 0) / av.time_base - duration) <= 0.1
