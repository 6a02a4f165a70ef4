"""The livestream engine against real servers: an in-process roomtape server with two aiortc publishers
(flash + beep on a shared clock, bob 250 ms after alice), nginx-rtmp from Debian as the receiver.

- a meeting nobody records is streamed: HLS on disk and an RTMP push; the push is pulled back from nginx and
  decoded (both tiles, audio, flash and beep within one frame for each publisher, bob 250 ms after alice);
- nginx is SIGKILLed mid-stream and started again: the push is retried with backoff and resumes, HLS never
  stops (the playlist keeps moving while the receiver is down);
- stop: LIVE then IDLE through ``on_status``, the playlist gets its end tag and decodes with PyAV (duration,
  frames, both tiles, audio), the tap's files are gone;
- bad input: an unreachable RTMP URL, a non-RTMP URL, a meeting without a live room, a second start: clear
  errors and nothing started.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc import RTCPeerConnection
from tests.conftest import free_port
from tests.integration.livestream.rtmp_server import RtmpServer
from tests.integration.media.roomtape_media_peers import accept_answer, no_ice_servers, publisher_offer
from tests.integration.recording.compose_media import BeepAudioTrack, FlashVideoTrack, Metronome, beep_onsets, onsets
from tests.integration.recording.recording_server import LiveServer, MeetingRoom, live_server, open_meeting, wait_for
from tests.integration.recording.test_composite_sync import paired

from roomtape.agents.timing import use_capture_clock
from roomtape.agents.tracks import MuteGate
from roomtape.errors import InvalidInput
from roomtape.livestream.engine import AlreadyStreaming, LivestreamEngine, NoLiveRoom, RtmpUnreachable
from roomtape.livestream.outputs import HLS_PLAYLIST

pytestmark = pytest.mark.timeout(240)

FRAME = 1 / 30
BEEPS = {"alice": (0.0, 1000.0), "bob": (0.25, 1500.0)}  # offset after each whole second, beep frequency


@pytest.fixture
async def srv(tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with live_server(tmp_path / "server") as server:
        yield server


def engine_of(srv: LiveServer) -> LivestreamEngine:
    engine = srv.ctx.livestreams
    assert engine is not None
    return engine


async def publish_flash(room: MeetingRoom, name: str, epoch: float) -> RTCPeerConnection:
    offset, freq = BEEPS[name]
    metronome = Metronome(epoch, offset)
    pc = RTCPeerConnection(no_ice_servers())
    tracks = [MuteGate(FlashVideoTrack(metronome)), MuteGate(BeepAudioTrack(metronome, freq))]
    offer = await publisher_offer(pc, *tracks)
    # Sender reports on the capture clock, as browsers (and RoomClient) send them: aiortc's own pair an RTP
    # timestamp with the moment the packet left, after the encoder thread, so a loaded machine shifts video
    # against audio at the publisher, before anything reaches roomtape.
    for transceiver, gate in zip(pc.getTransceivers(), tracks, strict=True):
        use_capture_clock(transceiver.sender, gate)
    await accept_answer(pc, await room.live.room.publish(room.pid(name), offer))
    return pc


@dataclass
class Media:
    """A decoded stream: per video frame its time and the mean luma of the two grid cells; the audio."""

    frame_times: np.ndarray
    tiles: dict[str, np.ndarray]
    rate: int
    samples: np.ndarray
    audio_start: float
    size: tuple[int, int]
    codecs: tuple[str, str]

    @property
    def video_seconds(self) -> float:
        return float(self.frame_times[-1] - self.frame_times[0]) if len(self.frame_times) else 0.0


def decode(url: str, seconds: float | None = None) -> Media:
    """Decode ``url`` (a playlist, or an RTMP stream for ``seconds`` of media)."""
    times: list[float] = []
    left: list[float] = []
    right: list[float] = []
    chunks: list[np.ndarray] = []
    audio_start: float | None = None
    with av.open(url, timeout=(20.0, 10.0)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        resampler = av.AudioResampler(format="fltp", layout="mono")
        first: float | None = None
        for packet in container.demux(video, audio):
            for frame in packet.decode():
                if isinstance(frame, av.VideoFrame):
                    y = frame.to_ndarray(format="gray")
                    h, w = y.shape
                    t = float(frame.time or 0.0)
                    first = t if first is None else first
                    times.append(t)
                    left.append(float(y[h * 3 // 8 : h * 5 // 8, w // 8 : w * 3 // 8].mean()))
                    right.append(float(y[h * 3 // 8 : h * 5 // 8, w * 5 // 8 : w * 7 // 8].mean()))
                elif isinstance(frame, av.AudioFrame):
                    if audio_start is None:
                        audio_start = float(frame.time or 0.0)
                    chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
            if seconds is not None and first is not None and times and times[-1] - first >= seconds:
                break
        size = video.codec_context.width, video.codec_context.height
        codecs = video.codec_context.name, audio.codec_context.name
        rate = audio.codec_context.sample_rate
    return Media(
        frame_times=np.array(times),
        tiles={"left": np.array(left), "right": np.array(right)},
        rate=rate,
        samples=np.concatenate(chunks).astype(np.float64) if chunks else np.zeros(0),
        audio_start=audio_start or 0.0,
        size=size,
        codecs=codecs,
    )


QUIET = 0.3
"""How long ``onsets`` wants a signal off before it counts a rise as an onset (its ``quiet``)."""


def check_sync(media: Media, tolerance: float) -> None:
    """Both tiles flash once a second, each with its publisher's beep within ``tolerance``; bob 250 ms later."""
    # A live stream decoded from wherever it was joined may begin inside a beep or a flash, whose "onset" is then
    # just the start of the data: onsets in the first QUIET seconds are not known to be onsets and are dropped.
    # The same at the end: a stream cut where the decode stopped ends in a part-decoded AAC frame. One CI run
    # found a bob "onset" 86 ms after alice's last beep, where 250 ms were sent, most likely that frame's
    # spread of her tone.
    heard = len(media.samples) / media.rate
    beeps = {
        name: [
            t + media.audio_start for t in beep_onsets(media.samples, media.rate, freq) if QUIET <= t < heard - QUIET
        ]
        for name, (_, freq) in BEEPS.items()
    }
    start = media.frame_times[0] if len(media.frame_times) else 0.0
    end = media.frame_times[-1] if len(media.frame_times) else 0.0
    flashes = {
        tile: [t for t in onsets(luma > 128, media.frame_times) if start + QUIET <= t < end - QUIET]
        for tile, luma in media.tiles.items()
    }
    seconds = media.video_seconds
    straight = len(paired(flashes["left"], beeps["alice"])) + len(paired(flashes["right"], beeps["bob"]))
    crossed = len(paired(flashes["left"], beeps["bob"])) + len(paired(flashes["right"], beeps["alice"]))
    tile_of = {"alice": "left", "bob": "right"} if straight >= crossed else {"alice": "right", "bob": "left"}
    for name in BEEPS:
        diffs = paired(flashes[tile_of[name]], beeps[name])
        print(f"{name}: {len(diffs)} flash/beep pairs in {seconds:.1f} s, ms: {[round(d * 1000) for d in diffs]}")
        assert len(flashes[tile_of[name]]) >= seconds - 2, (name, flashes, beeps)
        # A beat cut by the start or the end of what was decoded may lack its flash or its beep.
        assert len(diffs) >= len(flashes[tile_of[name]]) - 2, (name, flashes, beeps)
        assert max(abs(d) for d in diffs) <= tolerance
    offsets = [min((b - a for b in beeps["bob"] if 0 < b - a < 0.5), default=None) for a in beeps["alice"]]
    found = [o for o in offsets if o is not None]
    print(f"bob - alice in ms: {[round(o * 1000) for o in found]}")
    assert len(found) >= seconds - 2
    assert all(abs(o - 0.25) <= 0.02 for o in found), found


def segments_written(playlist: Path) -> int:
    """How many segments the rolling playlist has listed so far (its media sequence plus the ones it lists).

    The media sequence alone stays 0 until the list is full (6 segments), so it says nothing early in a stream.
    """
    text = playlist.read_text()
    found = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", text)
    assert found is not None
    return int(found.group(1)) + len(re.findall(r"#EXTINF:", text))


async def test_livestream_hls_and_rtmp_push_survive_a_dead_receiver(
    srv: LiveServer, rtmp: RtmpServer, tmp_path: Path
) -> None:
    engine = engine_of(srv)
    room = await open_meeting(srv, "alice", "bob")
    epoch = math.floor(time.time()) + 1.0
    pcs = [await publish_flash(room, name, epoch) for name in ("alice", "bob")]
    statuses: list[tuple[str, str | None]] = []

    async def on_status(status: str, reason: str | None) -> None:
        statuses.append((status, reason))

    hls = tmp_path / "hls"
    playlist = hls / HLS_PLAYLIST
    try:
        await asyncio.sleep(1.5)  # both connected and sending
        await engine.start(
            livestream_id="ls-1",
            app_id=srv.app_id,
            meeting_id=room.meeting.id,
            hls_dir=hls,
            rtmp_url=rtmp.url("key"),
            width=640,
            height=360,
            on_status=on_status,
        )
        assert engine.active(room.meeting.id) == "ls-1"
        tap = srv.data_dir / "livestreams" / "ls-1"
        assert tap.is_dir()
        await wait_for(lambda: statuses, 40, "LIVE")
        assert statuses == [("LIVE", None)] and playlist.exists()
        await wait_for(lambda: (engine.rtmp_state("ls-1") or {}).get("state") == "live", 20, "the push")

        # The push, pulled back from nginx: both tiles, audio, flash and beep within a frame (FLV has ms stamps).
        pulled = await asyncio.to_thread(decode, rtmp.url("key"), 6.0)
        assert pulled.codecs == ("h264", "aac") and pulled.size == (640, 360)
        check_sync(pulled, FRAME + 2e-3)

        # The receiver dies: the push retries with backoff while HLS goes on.
        before = segments_written(playlist)
        rtmp.kill()
        await wait_for(lambda: (engine.rtmp_state("ls-1") or {}).get("state") == "retrying", 20, "a retry")
        down = segments_written(playlist)
        # Two more 2 s segments while the receiver stays down: HLS does not wait on the push.
        await wait_for(lambda: segments_written(playlist) >= down + 2, 20, "HLS going on while the receiver is down")
        assert segments_written(playlist) > before
        retrying = engine.rtmp_state("ls-1")
        print(f"while down: {retrying}")
        assert retrying is not None and retrying["state"] == "retrying" and retrying["attempt"] >= 2
        rtmp.start()
        await wait_for(lambda: (engine.rtmp_state("ls-1") or {}).get("state") == "live", 40, "the push to resume")
        again = await asyncio.to_thread(decode, rtmp.url("key"), 3.0)
        assert again.video_seconds >= 3.0 and len(again.samples) > 0
        assert engine.status("ls-1") == "LIVE"

        await engine.stop("ls-1")
        assert statuses == [("LIVE", None), ("IDLE", None)]
        assert engine.active(room.meeting.id) is None and not tap.exists()
        assert not srv.ctx.recordings.tapping("ls-1")  # type: ignore[union-attr]
    finally:
        for pc in pcs:
            await pc.close()
        await engine.stop("ls-1")

    # The HLS output: a rolling playlist that ended, 2 s segments, both tiles and audio.
    text = playlist.read_text()
    assert "#EXT-X-ENDLIST" in text
    durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+)", text)]
    print(f"HLS segments: {durations}")
    assert 3 <= len(durations) <= 6 and all(d <= 4.0 for d in durations)
    played = await asyncio.to_thread(decode, str(playlist))
    assert played.codecs == ("h264", "aac") and played.size == (640, 360)
    assert abs(played.video_seconds - sum(durations)) <= 0.5
    assert abs(len(played.frame_times) - sum(durations) * 30) <= 30
    check_sync(played, FRAME + 1e-3)


async def test_livestream_bad_input_starts_nothing(srv: LiveServer, rtmp: RtmpServer, tmp_path: Path) -> None:
    engine = engine_of(srv)
    room = await open_meeting(srv, "alice")

    async def on_status(status: str, reason: str | None) -> None:
        pass

    def start(**overrides: object):  # type: ignore[no-untyped-def]
        args: dict[str, object] = {
            "livestream_id": "ls-bad",
            "app_id": srv.app_id,
            "meeting_id": room.meeting.id,
            "hls_dir": tmp_path / "hls",
            "rtmp_url": None,
            "width": 640,
            "height": 360,
            "on_status": on_status,
        }
        return engine.start(**{**args, **overrides})  # type: ignore[arg-type]

    closed = free_port()  # nothing listens there
    with pytest.raises(RtmpUnreachable, match=rf"127\.0\.0\.1:{closed} is unreachable"):
        await start(rtmp_url=f"rtmp://127.0.0.1:{closed}/live/key")
    with pytest.raises(InvalidInput, match="rtmp:// or rtmps://"):
        await start(rtmp_url="http://127.0.0.1/live")
    with pytest.raises(InvalidInput, match="even"):
        await start(width=641)
    with pytest.raises(NoLiveRoom, match="no live session"):
        await start(meeting_id="not-live")
    assert engine.active(room.meeting.id) is None
    assert not (srv.data_dir / "livestreams" / "ls-bad").exists()
    assert not srv.ctx.recordings.tapping("ls-bad")  # type: ignore[union-attr]

    await start(livestream_id="ls-one", rtmp_url=rtmp.url("one"))
    try:
        with pytest.raises(AlreadyStreaming, match="live-streamed already"):
            await start(livestream_id="ls-two")
        with pytest.raises(AlreadyStreaming, match="running already"):
            await start(livestream_id="ls-one")
        assert engine.active(room.meeting.id) == "ls-one"
    finally:
        await engine.stop("ls-one")
    assert engine.active(room.meeting.id) is None
