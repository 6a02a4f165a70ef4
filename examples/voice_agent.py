"""A voice agent you can talk to from a browser: it greets you, answers with canned lines, records the call.

Start a server (``make run``), then, from the repository::

    .venv/bin/python examples/voice_agent.py

It reads the demo app's credentials from ``data/demo-credentials.json`` (or ``--token``, ``--account-id`` and
``--app-id``), creates a meeting (or joins ``--meeting``), adds you as a participant and prints your join URL.
Open it in a browser and join with your microphone. The agent:

- greets you with espeak-ng speech (``espeak-ng --stdout``, resampled to 48 kHz PCM and pushed through the
  SDK's audio track);
- listens with a simple energy voice-activity detector on the PCM it receives from you, and after each thing
  you say answers with the next canned line; what you said is transcribed by roomtape's speech-to-text seam
  (the embedded offline PocketSphinx, or the OpenAI-compatible server ``ROOMTAPE_STT_URL`` names) and reported
  as a ``user_input_transcribed`` item with your words, their timings and the turn's times;
- reports every line it speaks as a ``conversation_item_added`` item whose start is when its audio goes out;
- records with ``recording=True``: a track file for you and one for itself, and a stereo composite with
  you on the left and the agent on the right.

It says goodbye after its last answer (or when you leave, or after ``--max-seconds``), stops the recordings,
and writes the session's transcript (roomtape's JSON) to ``--transcript-out``. It prints one JSON object per
line on stdout: ``{"event": "join_url", ...}``, ``"user_joined"``, ``"said"``, ``"heard"``, ``"done"`` (times
in seconds on the session clock).
Requires espeak-ng (Debian: ``apt-get install espeak-ng``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from roomtape.agents import AUDIO_SAMPLE_RATE, AgentRoom, JobContext, RoomOptions
from roomtape.config import load_settings
from roomtape.media.ice import parse_addresses, use_host_addresses
from roomtape.transcripts.stt import SAMPLE_RATE, PcmAudio, SpeechToText, stt_backend

GREETING = "Hello! I am the roomtape demo agent. This call is recorded. How can I help you today?"
ANSWERS = (
    "I see. Could you tell me a little more about that?",
    "Thank you. I have noted it down for you.",
    "Is there anything else I can do for you?",
)
GOODBYE = "Thank you for calling. Goodbye!"

FRAME = 0.02
"""Seconds per PCM frame the SDK hands over."""
HEARD_KEEP = 30.0
"""Seconds of each user's audio kept for transcribing their current turn."""
TURN_MARGIN = 0.3
"""Seconds of audio kept around a turn the energy detector found (it cuts soft word edges)."""


def say(**event: Any) -> None:
    """Print one JSON event line."""
    print(json.dumps(event), flush=True)


def synthesize(text: str, voice: str = "en", speed: int = 165) -> np.ndarray:
    """``text`` spoken by espeak-ng, as int16 mono PCM at 48 kHz."""
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), text], check=True, capture_output=True, timeout=60
    ).stdout
    # espeak-ng writes a 16-bit mono WAV; --stdout cannot seek back, so trust the data chunk, not its size.
    rate = int.from_bytes(wav[24:28], "little")
    data = wav.find(b"data")
    pcm = np.frombuffer(wav[data + 8 :][: (len(wav) - data - 8) // 2 * 2], dtype="<i2").astype(np.float64)
    n = int(len(pcm) * AUDIO_SAMPLE_RATE / rate)
    out = np.interp(np.arange(n) * rate / AUDIO_SAMPLE_RATE, np.arange(len(pcm)), pcm)
    return out.astype(np.int16)


class EnergyVad:
    """Utterances in a PCM stream, found by loudness.

    Speech is a frame louder than ``threshold_db`` dBFS and 10 dB over the quietest recent level; an utterance
    needs ``min_speech`` seconds of speech and ends after ``hangover`` seconds of silence.
    """

    def __init__(self, threshold_db: float = -45.0, min_speech: float = 0.25, hangover: float = 0.7) -> None:
        self.threshold_db = threshold_db
        self.min_speech = min_speech
        self.hangover = hangover
        self.floor_db = -90.0
        self.start: float | None = None
        self.last_voice = 0.0
        self.voiced = 0.0
        self.quiet_needed = 0.0

    def reset(self) -> None:
        """Forget the utterance in progress; the next one starts only after ``hangover`` seconds of silence.

        Called while the agent talks: what the user says meanwhile is not a turn, and neither is the rest of
        a sentence that was under way when the agent stopped.
        """
        self.start = None
        self.quiet_needed = self.hangover

    def feed(self, pcm: np.ndarray, at: float) -> tuple[float, float] | None:
        """Feed one frame that started at ``at`` (seconds); returns ``(start, end)`` when an utterance ended."""
        rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2))) if len(pcm) else 0.0
        level = 20 * np.log10(max(rms, 1.0) / 32768)
        self.floor_db = min(level, self.floor_db + 0.05)  # the quietest recent level, creeping up slowly
        loud = level > self.threshold_db and level > self.floor_db + 10
        duration = len(pcm) / AUDIO_SAMPLE_RATE
        if self.quiet_needed > 0:
            self.quiet_needed = self.hangover if loud else self.quiet_needed - duration
            return None
        if loud:
            if self.start is None:
                self.start, self.voiced = at, 0.0
            self.voiced += duration
            self.last_voice = at + duration
        elif self.start is not None and at - self.last_voice >= self.hangover:
            start, end, voiced = self.start, self.last_voice, self.voiced
            self.start = None
            if voiced >= self.min_speech:
                return start, end
        return None


class Heard:
    """A user's recent PCM frames with their start times on the agent's clock, to cut turns out of."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, np.ndarray]] = []

    def add(self, at: float, pcm: np.ndarray) -> None:
        """Keep a frame; forget what is older than :data:`HEARD_KEEP`."""
        self.frames.append((at, pcm))
        while self.frames and self.frames[0][0] < at - HEARD_KEEP:
            self.frames.pop(0)

    def cut(self, start: float, end: float) -> tuple[float, PcmAudio]:
        """The audio from ``start`` to ``end`` as 16 kHz PCM for speech-to-text, and when its first sample was."""
        chosen = [(at, pcm) for at, pcm in self.frames if start <= at + len(pcm) / AUDIO_SAMPLE_RATE and at <= end]
        if not chosen:
            return start, PcmAudio(b"")
        x = np.concatenate([pcm for _, pcm in chosen]).astype(np.float64)
        n = int(len(x) * SAMPLE_RATE / AUDIO_SAMPLE_RATE)
        down = np.interp(np.arange(n) * AUDIO_SAMPLE_RATE / SAMPLE_RATE, np.arange(len(x)), x)
        return chosen[0][0], PcmAudio(np.clip(down, -32768, 32767).astype(np.int16).tobytes())


class Agent:
    """The conversation: greet, answer each user turn with the next line, say goodbye.

    Listening never waits for speaking: the PCM frames are read as they arrive (their time is their arrival),
    and each line is spoken by a task of its own. While the agent talks, the user's audio starts no turn.
    """

    def __init__(self, room: AgentRoom, voice: str, stt: SpeechToText) -> None:
        self.room = room
        self.voice = voice
        self.stt = stt
        self.lines: asyncio.Queue[str | None] = asyncio.Queue()
        self.busy = False
        """True from the moment a line is queued until it has been played."""
        self.answers = list(ANSWERS)
        self.done = asyncio.Event()

    def queue(self, text: str | None) -> None:
        """Say ``text`` after what is queued (None: hang up after that)."""
        self.busy = True
        self.lines.put_nowait(text)

    async def speaker(self) -> None:
        """Say the queued lines one after the other; each is reported when its audio goes out."""
        while (text := await self.lines.get()) is not None:
            pcm = await asyncio.to_thread(synthesize, text, self.voice)
            start = self.room.push_audio(pcm)
            seconds = len(pcm) / AUDIO_SAMPLE_RATE
            item = await self.room.conversation_item_added("assistant", text, start=start, end=start + seconds)
            say(event="said", text=text, item_id=item["id"], start=item["start"], seconds=round(seconds, 3))
            await asyncio.sleep(max(0.0, start + seconds - self.room.now()) + 0.2)  # until it has been heard
            self.busy = not self.lines.empty()
        self.done.set()

    async def listen(self, participant_id: str, frames: AsyncIterator[np.ndarray]) -> None:
        """Answer after each utterance of one user, and transcribe it (in a task: listening goes on)."""
        vad = EnergyVad()
        heard = Heard()
        pending: list[asyncio.Task[None]] = []
        async for pcm in frames:
            at = self.room.now() - len(pcm) / AUDIO_SAMPLE_RATE  # when the frame started, on the agent's clock
            heard.add(at, pcm)
            if self.busy:
                vad.reset()  # the agent is talking: turns start when it is done
                continue
            utterance = vad.feed(pcm, at)
            if utterance is None or not self.answers:
                continue
            start, end = utterance
            self.queue(self.answers.pop(0))
            if not self.answers:
                self.queue(GOODBYE)
                self.queue(None)
            origin, audio = heard.cut(start - TURN_MARGIN, end + TURN_MARGIN)
            pending.append(asyncio.create_task(self.transcribe(participant_id, start, end, origin, audio)))
        await asyncio.gather(*pending)

    async def transcribe(self, participant_id: str, start: float, end: float, origin: float, audio: PcmAudio) -> None:
        """Speech-to-text of one turn, reported as ``user_input_transcribed`` with its words' times."""
        try:
            result = await self.stt.transcribe(audio)
            text, words = result.text, [(w.word, origin + w.start, origin + w.end) for w in result.words]
        except Exception as exc:  # a failed transcription still reports the turn
            text, words = f"(not transcribed: {exc})", []
        if words:  # the turn spans the words heard, which the energy detector may have cut
            start, end = min(start, words[0][1]), max(end, words[-1][2])
        item = await self.room.user_input_transcribed(
            text or "(inaudible)",
            True,
            speaker_id=participant_id,
            start=start,
            end=end,
            participant_id=participant_id,
            words=words,
        )
        say(
            event="heard",
            participant_id=participant_id,
            item_id=item["id"],
            text=text,
            start=item["start"],
            seconds=round(end - start, 3),
        )

    async def run(self) -> None:
        """Greet each user whose audio arrives, then listen to them."""
        tasks = [asyncio.create_task(self.speaker())]
        try:
            async for participant_id, frames in self.room.audio_streams():
                say(event="user_joined", participant_id=participant_id)
                self.queue(GREETING)
                tasks.append(asyncio.create_task(self.listen(participant_id, frames)))
        finally:
            for task in tasks:
                task.cancel()


def credentials(args: argparse.Namespace) -> tuple[str, str, str]:
    """``(api token, account id, app id)`` from the flags, else the demo credentials file."""
    if args.token and args.account_id and args.app_id:
        return args.token, args.account_id, args.app_id
    path = Path(args.credentials)
    if not path.is_file():
        sys.exit(f"no credentials: pass --token, --account-id and --app-id, or run `make run` to create {path}")
    creds = json.loads(path.read_text())
    return str(creds["api_token"]), str(creds["account_id"]), str(creds["app_id"])


async def main(args: argparse.Namespace) -> None:
    """Set the meeting up, run the agent, write the transcript."""
    token, account_id, app_id = credentials(args)
    use_host_addresses(parse_addresses(args.ice_host))
    base = args.url.rstrip("/")
    api = f"{base}/accounts/{account_id}/realtime/kit/{app_id}"
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=15) as http:
        meeting_id = args.meeting
        if meeting_id is None:
            r = await http.post(f"{api}/meetings", json={"title": "Voice agent demo"})
            r.raise_for_status()
            meeting_id = r.json()["data"]["id"]
        r = await http.post(
            f"{api}/meetings/{meeting_id}/participants",
            json={
                "name": args.user_name,
                "preset_name": "group_call_participant",
                "custom_participant_id": os.urandom(4).hex(),
            },
        )
        r.raise_for_status()
        say(event="join_url", meeting_id=meeting_id, url=f"{base}/join/{meeting_id}?token={r.json()['data']['token']}")

        options = RoomOptions(
            room_id=meeting_id,
            name="Agent",
            recording=True,
            auth_token=token,
            base_url=base,
            account_id=account_id,
            app_id=app_id,
        )
        ctx = JobContext(room_options=options)
        room = await ctx.connect()
        for note in room.recording_notes:
            print(f"recording: {note}", file=sys.stderr)
        stt = stt_backend(load_settings())  # ROOMTAPE_STT_URL picks a server; else the embedded PocketSphinx
        await stt.transcribe(PcmAudio(b""))  # load the model now, not during the caller's first turn
        agent = Agent(room, args.voice, stt)
        runner = asyncio.create_task(agent.run())
        left = asyncio.Event()
        room.client.on("participant_left", lambda _: left.set() if not room.client.participants else None)
        waits = [asyncio.create_task(agent.done.wait()), asyncio.create_task(left.wait())]
        try:
            await asyncio.wait([runner, *waits], timeout=args.max_seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (runner, *waits):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(runner, *waits, return_exceptions=True)
            session_id = room.session_id
            await ctx.shutdown()  # stops the recordings, leaves
            await stt.aclose()
        r = await http.get(f"{base}/v1/sessions/{session_id}/transcript", params={"format": "json"})
        r.raise_for_status()
        if args.transcript_out:
            await asyncio.to_thread(Path(args.transcript_out).write_text, json.dumps(r.json(), indent=2))
        say(
            event="done",
            meeting_id=meeting_id,
            session_id=session_id,
            agent_participant_id=room.participant_id,
            track_recordings=room.track_recordings,
            composite_recording_id=(room.composite_recording or {}).get("id"),
            items=len(r.json()["items"]),
            at=time.time(),
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--url", default=os.environ.get("ROOMTAPE_URL", "http://127.0.0.1:8080"), help="roomtape server")
    p.add_argument("--token", default=os.environ.get("ROOMTAPE_AUTH_TOKEN"), help="the app's API token")
    p.add_argument("--account-id", default=os.environ.get("ROOMTAPE_ACCOUNT_ID"))
    p.add_argument("--app-id", default=os.environ.get("ROOMTAPE_APP_ID"))
    p.add_argument("--credentials", default="data/demo-credentials.json", help="used when no --token is given")
    p.add_argument("--meeting", help="join this meeting instead of creating one")
    p.add_argument("--user-name", default="Caller", help="name of the participant whose join URL is printed")
    p.add_argument("--voice", default="en", help="espeak-ng voice")
    p.add_argument("--max-seconds", type=float, default=300.0, help="hang up after this long")
    p.add_argument("--transcript-out", help="write the session's transcript (JSON) here")
    p.add_argument(
        "--ice-host",
        default=os.environ.get("ROOMTAPE_ICE_HOST_ADDRESSES", ""),
        help="comma-separated local addresses to gather ICE candidates on (e.g. 127.0.0.1); default: all",
    )
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
