"""Audio for LiveKit Agents uploads: speech from espeak-ng, and a stereo OGG/Opus file laid out like LiveKit's
``RecorderIO`` writes it (the user on the left, the agent on the right)."""

from __future__ import annotations

import io
import subprocess
import time
import wave
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np

RATE = 48000


def speech(text: str, directory: Path, voice: str = "en") -> np.ndarray:
    """``text`` spoken by espeak-ng, as int16 mono 48 kHz PCM with leading and trailing silence cut."""
    path = directory / f"speech-{abs(hash((text, voice)))}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "170", "-w", str(path), text], check=True, timeout=30)
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).astype(np.float64)
    resampled = np.interp(np.arange(int(len(pcm) * RATE / rate)) / RATE, np.arange(len(pcm)) / rate, pcm)
    loud = np.flatnonzero(np.abs(resampled) > 0.05 * np.abs(resampled).max())
    return resampled[loud[0] : loud[-1] + 1].astype(np.int16)


def tone(frequency: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)


def place(seconds: float, clips: list[tuple[float, np.ndarray]]) -> np.ndarray:
    """A silent int16 track of ``seconds`` with each ``(at, pcm)`` clip placed at ``at`` seconds."""
    out = np.zeros(int(seconds * RATE), dtype=np.int16)
    for at, pcm in clips:
        i = int(at * RATE)
        out[i : i + len(pcm)] = pcm[: len(out) - i]
    return out


def ogg_opus(left: np.ndarray, right: np.ndarray) -> bytes:
    """Two int16 48 kHz tracks as a stereo OGG/Opus file."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=RATE, layout="stereo")
        stereo = np.stack([left, right], axis=1).astype(np.int16)
        n = 960
        for i in range(0, len(stereo) - n + 1, n):
            frame = av.AudioFrame.from_ndarray(stereo[i : i + n].reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate, frame.pts = RATE, i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def decode_stereo(data: bytes) -> np.ndarray:
    """An audio file's samples as float, shape (channels, n), at 48 kHz."""
    chunks = []
    with av.open(io.BytesIO(data)) as container:
        resampler = av.AudioResampler(format="fltp", rate=RATE)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray())
    return np.concatenate(chunks, axis=1)


def onset(samples: np.ndarray, threshold_ratio: float = 0.1, window: float = 0.01) -> float:
    """When the first window louder than ``threshold_ratio`` of the loudest one starts, in seconds."""
    n = int(window * RATE)
    frames = samples[: len(samples) // n * n].reshape(-1, n)
    level = np.sqrt((frames**2).mean(axis=1))
    return float(np.flatnonzero(level >= threshold_ratio * level.max())[0] * window)


def wait_uploaded(base_url: str, token: str, account_id: str, app_id: str, recording_id: str) -> dict[str, Any]:
    """The RealtimeKit recording once UPLOADED (the upload job runs in the server)."""
    url = f"{base_url}/accounts/{account_id}/realtime/kit/{app_id}/recordings/{recording_id}"
    deadline = time.monotonic() + 60
    while True:
        r = httpx.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
        assert r.status_code == 200, r.text
        data = dict(r.json()["data"])
        if data["status"] == "UPLOADED":
            return data
        assert data["status"] != "ERRORED" and time.monotonic() < deadline, data
        time.sleep(0.2)
