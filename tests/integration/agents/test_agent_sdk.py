"""The agent SDK against a real server: an agent (``JobContext``) and a user (``RoomClient``) meet, hear each
other as PCM, the agent reports transcript items over the signaling channel, and ``recording=True`` records
both sides; the agent's espeak-ng phrases line up with their transcript items in the recorded file."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import wave
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
from tests.conftest import Server
from tests.integration.media.roomtape_media_peers import ToneAudioTrack, dominant_frequency
from tests.integration.signaling.signaling_helpers import Api, outbox, run_signaling_server, wait_for

from roomtape.agents import AudioPushTrack, JobContext, RoomClient, RoomOptions, Stream

pytestmark = pytest.mark.timeout(120)

RATE = 48000
SKEW = 7.3
"""The agent's clock runs this many seconds ahead of the server's: the offset the SDK must measure."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from run_signaling_server(tmp_path_factory.mktemp("agents"))


@pytest.fixture(scope="module")
def api(server: Server) -> Api:
    return Api(server)


def skewed_clock() -> float:
    return time.time() + SKEW


def options(server: Server, meeting_id: str, *, recording: bool) -> RoomOptions:
    return RoomOptions(
        room_id=meeting_id,
        name="Agent",
        recording=recording,
        auth_token=server.api_token,
        base_url=server.base_url,
        account_id=server.account_id,
        app_id=server.app_id,
        clock=skewed_clock,
    )


def tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.4 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def get(server: Server, path: str, **params: Any) -> Any:
    response = httpx.get(
        server.base_url + path, params=params, headers={"Authorization": f"Bearer {server.api_token}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


def recordings(api: Api, meeting_id: str) -> list[dict[str, Any]]:
    return list(api._call("GET", "/recordings", params={"meeting_id": meeting_id, "per_page": 50}))


def epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def test_agent_and_user_hear_each_other_report_transcript_and_record(server: Server, api: Api) -> None:
    meeting_id = api.meeting()
    ctx = JobContext(room_options=options(server, meeting_id, recording=True))
    enabled: list[Stream] = []
    disabled: list[Stream] = []
    room = await ctx.connect()
    room.on_stream_enabled = enabled.append
    room.on_stream_disabled = disabled.append
    user_id, user_token = api.participant(meeting_id, "user")
    user = RoomClient(server.base_url, user_token)
    heard: list[np.ndarray] = []
    agent_heard: list[np.ndarray] = []

    async def agent_listens() -> None:
        async for participant_id, frames in room.audio_streams():
            assert participant_id == user_id
            async for pcm in frames:
                assert pcm.dtype == np.int16
                agent_heard.append(pcm)

    async def user_listens() -> None:
        async for remote in user.remote_tracks():
            assert remote.participant_id == room.participant_id and remote.track is not None
            while True:
                frame = await remote.track.recv()
                heard.append(frame.to_ndarray().reshape(-1)[:: len(frame.layout.channels)])

    listeners = [asyncio.ensure_future(agent_listens())]
    try:
        # The clock offset was measured on connect: the skew, within the round trip.
        assert abs(room.clock_offset.seconds - SKEW) < 0.05, room.clock_offset
        await user.join()
        listeners.append(asyncio.ensure_future(user_listens()))
        await user.publish(audio=ToneAudioTrack(440))
        room.push_audio(tone(880, 3.0))
        await wait_for(lambda: len(agent_heard) >= 100 and len(heard) >= 100, 20, "audio both ways")
        assert abs(dominant_frequency(np.concatenate(agent_heard[-50:])) - 440) < 5
        assert abs(dominant_frequency(np.concatenate(heard[-50:])) - 880) < 5
        await wait_for(lambda: any(s.participant_id == user_id for s in enabled), 5, "user's stream enabled")

        # Transcript items over the signaling channel, times on the agent's (skewed) clock.
        said_at = room.now()
        item = await room.conversation_item_added("assistant", "Hello, how can I help?", start=said_at, end=said_at + 1)
        heard_at = room.now()
        await room.user_input_transcribed("I need a refund", True, "spk_0", "en", start=heard_at, end=heard_at + 0.8)
        await user.set_muted("audio", True)
        await wait_for(lambda: any(s.participant_id == user_id for s in disabled), 5, "user's stream disabled")

        transcript = get(server, f"/v1/sessions/{room.session_id}/transcript", format="json")
        origin = transcript["origin_epoch"]
        items = transcript["items"]
        assert [i["role"] for i in items] == ["assistant", "user"]
        assert items[0]["id"] == item["id"]
        for sent, got in zip((said_at, heard_at), items, strict=True):
            # agent time → server time with the true offset, then onto the session clock.
            assert abs(got["start"] - (sent - SKEW - origin)) < 0.05, (got, sent)
        assert items[0]["participant_id"] == room.participant_id and items[1]["participant_id"] == user_id

        # recording=True: a track recording each for the agent and the user (composite: noted if not offered).
        assert set(room.track_recordings) == {room.participant_id, user_id}, room.recording_notes
        rows = recordings(api, meeting_id)
        tracks = {r["id"] for r in rows if r["kind"] == "track"}
        assert set(room.track_recordings.values()) <= tracks
        assert room.composite_recording is not None or any("composite" in n for n in room.recording_notes)
    finally:
        await ctx.shutdown()
        await user.leave()
        for task in listeners:
            task.cancel()
        await asyncio.gather(*listeners, return_exceptions=True)
    await wait_for_uploaded(api, meeting_id, set(ctx.room.track_recordings.values()))
    by_id = {r["id"]: r for r in recordings(api, meeting_id)}
    for participant_id, recording_id in ctx.room.track_recordings.items():
        files = by_id[recording_id]["files"]
        assert files and all(f["participant_id"] == participant_id for f in files)

    # Everyone left: the session ends after the keep-alive, and its transcript goes out as meeting.transcript.
    deadline = time.monotonic() + 20
    while not (sent := [p for e, p in await outbox(server, meeting_id) if e == "meeting.transcript"]):
        assert time.monotonic() < deadline, "no meeting.transcript after the session ended"
        await asyncio.sleep(0.2)
    [payload] = sent
    assert payload["meeting"]["sessionId"] == ctx.room.session_id and payload["meeting"]["status"] == "ENDED"
    assert payload["itemCount"] == 2 and [i["role"] for i in payload["transcript"]["items"]] == ["assistant", "user"]
    # The signed download link works without a token and gives the same transcript.
    assert payload["transcriptDownloadUrl"].startswith(server.base_url)
    async with httpx.AsyncClient() as http:
        exported = (await http.get(payload["transcriptDownloadUrl"])).json()
    assert len(exported["items"]) == 2


async def test_seed_000_pattern_records_a_track_from_stream_events(server: Server, api: Api) -> None:
    """recording defaults to False; seed 000's agent methods ``on_stream_enabled(participant_id, kind)`` /
    ``on_stream_disabled`` start and stop a VideoSDK track recording as the user unmutes and mutes."""
    meeting_id = api.meeting()
    ctx = JobContext(room_options=options(server, meeting_id, recording=False))
    room = await ctx.connect()
    assert ctx.room_options.recording is False and RoomOptions(room_id="m").recording is False
    assert room.track_recordings == {} and room.composite_recording is None  # nothing recorded unasked
    http = httpx.AsyncClient(base_url=server.base_url, headers={"Authorization": server.api_token}, timeout=10)
    started: dict[str, str] = {}
    stopped: list[str] = []

    class Agent:
        async def on_stream_enabled(self, participant_id: str, kind: str = "audio") -> None:
            if participant_id == room.participant_id or kind != "audio":
                return
            body = {"roomId": meeting_id, "participantId": participant_id, "kind": kind, "fileFormat": "webm"}
            r = await http.post("/v2/recordings/participant/track/start", json=body)
            assert r.status_code == 200, r.text
            started[participant_id] = r.json()["recordingId"]

        async def on_stream_disabled(self, participant_id: str, kind: str = "audio") -> None:
            body = {"roomId": meeting_id, "participantId": participant_id, "kind": kind}
            r = await http.post("/v2/recordings/participant/track/stop", json=body)
            assert r.status_code == 200, r.text
            stopped.append(participant_id)

    agent = Agent()
    room.on_stream_enabled = agent.on_stream_enabled
    room.on_stream_disabled = agent.on_stream_disabled
    user_id, user_token = api.participant(meeting_id, "user")
    user = RoomClient(server.base_url, user_token)
    try:
        await user.join()
        await user.publish(audio=ToneAudioTrack(440))
        await wait_for(lambda: user_id in started, 10, "track recording started from on_stream_enabled")
        await asyncio.sleep(2.0)
        await user.set_muted("audio", True)
        await wait_for(lambda: stopped == [user_id], 10, "track recording stopped from on_stream_disabled")
    finally:
        await ctx.shutdown()
        await user.leave()
        await http.aclose()
    await wait_for_uploaded(api, meeting_id, {started[user_id]})
    [row] = [r for r in recordings(api, meeting_id) if r["id"] == started[user_id]]
    [file] = row["files"]
    assert file["participant_id"] == user_id and row["kind"] == "track"
    samples = decode(next((server.data_dir / "storage").rglob(Path(file["path"]).name)))
    print(f"recorded {len(samples) / RATE:.2f} s between enable and disable")
    assert 1.5 < len(samples) / RATE < 6, len(samples) / RATE
    assert abs(dominant_frequency(samples[RATE // 2 : RATE // 2 + RATE]) - 440) < 5


async def wait_for_uploaded(api: Api, meeting_id: str, ids: set[str], within: float = 30) -> None:
    deadline = time.monotonic() + within
    while True:
        statuses = {r["id"]: r["status"] for r in recordings(api, meeting_id) if r["id"] in ids}
        if statuses and all(s in ("UPLOADED", "ERRORED") for s in statuses.values()):
            assert set(statuses.values()) == {"UPLOADED"}, statuses
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"recordings not uploaded: {statuses}")
        await asyncio.sleep(0.2)


# --- alignment -----------------------------------------------------------------------------------------------

PHRASES = ("Hello, I am your assistant.", "How can I help you today?", "Goodbye and have a nice day.")
WINDOW = 0.01  # seconds per energy window


def espeak(text: str, directory: Path, voice: str = "en") -> np.ndarray:
    """The phrase as int16 mono 48 kHz PCM, leading and trailing silence cut."""
    path = directory / f"{abs(hash((text, voice)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float64)
    resampled = np.interp(np.arange(int(len(pcm) * RATE / rate)) / RATE, np.arange(len(pcm)) / rate, pcm)
    loud = np.flatnonzero(np.abs(resampled) > 0.05 * np.abs(resampled).max())
    return resampled[loud[0] : loud[-1] + 1].astype(np.int16)


def energy(samples: np.ndarray) -> np.ndarray:
    n = int(WINDOW * RATE)
    frames = samples[: len(samples) // n * n].astype(np.float64).reshape(-1, n)
    return np.sqrt((frames**2).mean(axis=1))


def decode_channels(path: Path) -> np.ndarray:
    """The file's audio as float samples at 48 kHz, shape (channels, n), placed by timestamp (0 = the file's
    start; samples before it, such as an encoder's priming, are dropped)."""
    out = np.zeros((0, 0))
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.sample_rate == RATE, stream.codec_context.sample_rate
        for frame in container.decode(stream):
            pcm = frame.to_ndarray().astype(np.float64)
            if frame.format.is_packed:
                pcm = pcm.reshape(-1, len(frame.layout.channels)).T
            at = round(float(frame.pts * frame.time_base) * RATE) if frame.pts is not None else out.shape[1]
            if at < 0:
                pcm, at = pcm[:, -at:], 0
            if out.shape[0] == 0:
                out = np.zeros((pcm.shape[0], 0))
            if out.shape[1] < at + pcm.shape[1]:
                out = np.concatenate([out, np.zeros((out.shape[0], at + pcm.shape[1] - out.shape[1]))], axis=1)
            out[:, at : at + pcm.shape[1]] = pcm
    return out


def decode(path: Path) -> np.ndarray:
    """The file's first channel (see :func:`decode_channels`)."""
    return decode_channels(path)[0]


def onset(level: np.ndarray, threshold: float, near: float, search: float = 0.5, quiet: float = 0.3) -> float:
    """Start of the first sound within ``near ± search`` seconds that follows ``quiet`` seconds of silence."""
    lo, hi, q = max(0, int((near - search) / WINDOW)), int((near + search) / WINDOW), int(quiet / WINDOW)
    for i in range(lo, min(hi, len(level))):
        if level[i] >= threshold and (level[max(0, i - q) : i] < threshold).all():
            return i * WINDOW
    raise AssertionError(f"no speech onset near {near:.2f} s")


async def test_spoken_phrases_line_up_with_their_transcript_items(server: Server, api: Api, tmp_path: Path) -> None:
    speech = [espeak(p, tmp_path) for p in PHRASES]
    meeting_id = api.meeting()
    ctx = JobContext(room_options=options(server, meeting_id, recording=True))
    room = await ctx.connect()
    sent: list[dict[str, Any]] = []
    try:
        await asyncio.sleep(0.5)
        for text, pcm in zip(PHRASES, speech, strict=True):
            start = room.push_audio(pcm)
            duration = len(pcm) / RATE
            sent.append(await room.conversation_item_added("assistant", text, start=start, end=start + duration))
            await asyncio.sleep(duration + 1.0)
    finally:
        await ctx.shutdown()
    recording_id = room.track_recordings[room.participant_id]
    await wait_for_uploaded(api, meeting_id, {recording_id})
    row = next(r for r in recordings(api, meeting_id) if r["id"] == recording_id)
    assert len(row["files"]) == 1, row["files"]
    file = row["files"][0]
    path = next((server.data_dir / "storage").rglob(Path(file["path"]).name))
    level = energy(decode(path))
    threshold = 0.1 * level.max()

    # The items on the recording's clock (0 = its first frame), as the dashboard would show them.
    transcript = get(server, f"/v1/recordings/{recording_id}/transcript", format="json")
    items = {i["id"]: i for i in transcript["items"]}
    file_origin = epoch(file["started_at"])
    shift = file_origin - transcript["origin_epoch"]  # the file's first frame on the recording clock
    errors = []
    for item in sent:
        on_recording = items[item["id"]]["start"]
        heard = onset(level, threshold, on_recording - shift) + shift
        errors.append(heard - on_recording)
    print(f"alignment errors (s): {[round(e, 4) for e in errors]}")
    assert all(abs(e) < 0.1 for e in errors), errors


AGENT_LINES = ("Hello, I am your assistant.", "Of course, which day works for you?", "Done, see you on Tuesday.")
USER_LINES = ("I would like to change my booking.", "Next Tuesday, please.")


async def wait_for_recording(api: Api, recording_id: str, within: float = 120) -> dict[str, Any]:
    """The recording once UPLOADED (fails on ERRORED or when it takes longer than ``within`` seconds)."""
    deadline = time.monotonic() + within
    while True:
        row = dict(api._call("GET", f"/recordings/{recording_id}"))
        if row["status"] == "UPLOADED":
            return row
        assert row["status"] != "ERRORED", row
        if time.monotonic() > deadline:
            raise TimeoutError(f"recording {recording_id} is still {row['status']}")
        await asyncio.sleep(0.3)


async def test_stereo_composite_puts_user_left_agent_right_in_line_with_the_transcript(
    server: Server, api: Api, tmp_path: Path
) -> None:
    """A live session with recording=True: agent and user take turns speaking espeak-ng phrases, the agent
    reports each as a transcript item on its own (skewed) clock; in the composite the agent is on the right,
    the user on the left, each phrase starts within 100 ms of its item, and the other channel is silent."""
    agent_speech = [espeak(p, tmp_path) for p in AGENT_LINES]
    user_speech = [espeak(p, tmp_path, "en+f3") for p in USER_LINES]
    meeting_id = api.meeting()
    ctx = JobContext(room_options=options(server, meeting_id, recording=True))
    room = await ctx.connect()
    user_id, user_token = api.participant(meeting_id, "user")
    user = RoomClient(server.base_url, user_token)
    voice = AudioPushTrack()
    sent: list[tuple[str, str, float]] = []  # item id, role, seconds of speech
    try:
        assert room.composite_recording is not None, room.recording_notes
        await user.join()
        await user.publish(audio=voice)
        await wait_for(lambda: user_id in room.track_recordings, 10, "the user's track recording")
        await asyncio.sleep(1.0)
        for n, (line, pcm) in enumerate(zip(AGENT_LINES, agent_speech, strict=True)):
            start, seconds = room.push_audio(pcm), len(pcm) / RATE
            item = await room.conversation_item_added("assistant", line, start=start, end=start + seconds)
            sent.append((item["id"], "assistant", seconds))
            await asyncio.sleep(seconds + 0.8)
            if n < len(USER_LINES):
                # The user speaks; the agent reports it on its own clock (SKEW ahead of the server's).
                said_at, seconds = time.time() + voice.due_in, len(user_speech[n]) / RATE
                voice.push(user_speech[n])
                item = await room.user_input_transcribed(
                    USER_LINES[n], True, "spk_0", "en", said_at + SKEW, said_at + SKEW + seconds, participant_id=user_id
                )
                sent.append((item["id"], "user", seconds))
                await asyncio.sleep(seconds + 0.8)
    finally:
        await ctx.shutdown()
        await user.leave()
    composite_id = str(ctx.room.composite_recording["id"])  # type: ignore[index]
    row = await wait_for_recording(api, composite_id)
    assert row["output_file_name"].endswith(".ogg") and row["download_url"], row
    path = tmp_path / row["output_file_name"]
    async with httpx.AsyncClient(timeout=30) as http:
        path.write_bytes((await http.get(row["download_url"])).content)
    with av.open(str(path)) as container:
        assert container.streams.audio[0].codec_context.channels == 2 and not container.streams.video
        head = bytes(container.streams.audio[0].codec_context.extradata or b"")
        assert head[18] == 1  # channel mapping family 1: each side's recorded Opus packets copied, not re-encoded
        tags = {**container.metadata, **container.streams.audio[0].metadata}  # Ogg keeps tags on the stream
        channel_map = json.loads(tags["roomtape_channel_map"])
    assert channel_map == [[user_id], [room.participant_id]], room.recording_notes  # user left, agent right
    audio = decode_channels(path)
    left, right = energy(audio[0]), energy(audio[1])

    transcript = get(server, f"/v1/recordings/{composite_id}/transcript", format="json")
    items = {i["id"]: i for i in transcript["items"]}
    assert [items[i]["role"] for i, _, _ in sent] == ["assistant", "user", "assistant", "user", "assistant"]
    errors, crosstalk = [], []
    for item_id, role, seconds in sent:
        item = items[item_id]
        speaking, other = (right, left) if role == "assistant" else (left, right)
        assert item["channel"] == ("right" if role == "assistant" else "left"), item
        heard = onset(speaking, 0.1 * speaking.max(), item["start"])
        errors.append(heard - item["start"])
        during = slice(int(heard / WINDOW), int((heard + seconds) / WINDOW))
        crosstalk.append(float(other[during].max() / speaking[during].max()))
    print(f"composite alignment errors (s): {[round(e, 4) for e in errors]}, other channel: {crosstalk}")
    assert all(abs(e) < 0.1 for e in errors), errors
    assert all(c < 0.01 for c in crosstalk), crosstalk  # the other side is silent while one speaks


async def test_signaling_ping_clock_and_bad_transcript_items(server: Server, api: Api) -> None:
    """The raw protocol: pong, and a bad transcript message answers an error and stores nothing of it."""
    from websockets.asyncio.client import connect

    meeting_id = api.meeting()
    _, token = api.participant(meeting_id, "raw")
    url = server.base_url.replace("http", "ws", 1) + f"/v1/meetings/{meeting_id}/ws?token={token}"
    async with connect(url) as ws:
        welcome = json.loads(await ws.recv())

        async def reply(message: dict[str, Any], kind: str) -> dict[str, Any]:
            await ws.send(json.dumps(message))
            while True:
                got = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if got["type"] in (kind, "error"):
                    return dict(got)

        before = time.time()
        pong = await reply({"type": "ping", "t": 123.5}, "pong")
        assert pong["t"] == 123.5 and before - 0.01 <= pong["server"] <= time.time() + 0.01
        bad_clock = await reply({"type": "clock", "offset": "soon"}, "pong")
        assert bad_clock["type"] == "error" and bad_clock["request"] == "clock"
        good = {"type": "conversation_item_added", "role": "assistant", "text": "ok", "start": 1.0, "end": 2.0}
        backwards = {**good, "text": "no", "start": 3.0, "end": 2.0}
        error = await reply({"type": "transcript", "events": [good, backwards]}, "transcript_stored")
        assert error["type"] == "error" and error["request"] == "transcript" and "before start" in error["message"]
        empty = await reply({"type": "transcript", "events": []}, "transcript_stored")
        assert empty["type"] == "error"
        await ws.send(json.dumps({"type": "clock", "offset": 100.0}))
        stored = await reply(
            {
                "type": "transcript",
                "request_id": "r1",
                "events": [{**good, "clock": "agent", "start": time.time() + 100, "end": time.time() + 100.5}],
            },
            "transcript_stored",
        )
        assert stored["type"] == "transcript_stored" and stored["request_id"] == "r1"
        transcript = get(server, f"/v1/sessions/{welcome['session_id']}/transcript", format="json")
        assert [i["text"] if "text" in i else i["content"] for i in transcript["items"]] in (["ok"], [["ok"]])
        assert abs(transcript["items"][0]["start"] - (time.time() - transcript["origin_epoch"])) < 1.0
        assert transcript["items"][0]["participant_id"] == welcome["participant_id"]
