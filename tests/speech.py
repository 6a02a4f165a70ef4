"""Synthetic speech for speech-to-text tests and ``bench/stt_accuracy.py``: espeak-ng phrases with known
silences between them, and phrase onsets measured in the audio itself (by energy), not assumed.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from roomtape.transcripts.stt import SAMPLE_RATE, PcmAudio, load_pcm

ESPEAK_VOICE = "en-us"
ESPEAK_SPEED = 140
"""Words per minute: espeak's default 175 is faster than people speak in meetings."""


def speak(text: str, voice: str = ESPEAK_VOICE, speed: int = ESPEAK_SPEED) -> PcmAudio:
    """``text`` spoken by espeak-ng, as 16 kHz mono PCM."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "speech.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        return load_pcm(wav)


def silence(seconds: float) -> PcmAudio:
    return PcmAudio(b"\x00\x00" * int(seconds * SAMPLE_RATE))


def onset(audio: PcmAudio, threshold: float = 0.05) -> float:
    """Seconds to the first 10 ms frame whose RMS exceeds ``threshold`` of the loudest frame's."""
    samples = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64)
    hop = SAMPLE_RATE // 100
    frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
    rms = np.sqrt((frames**2).mean(axis=1))
    if not len(rms) or rms.max() == 0:
        raise ValueError("no sound")
    return float(np.argmax(rms > threshold * rms.max())) * hop / SAMPLE_RATE


@dataclass(frozen=True)
class Phrase:
    text: str
    start: float
    """Where the phrase's audio begins in the concatenation."""
    onset: float
    """Where its sound begins (measured by energy), seconds from the concatenation's start."""
    end: float


def concatenate(texts: list[str], gap: float = 1.2, lead: float = 1.0) -> tuple[PcmAudio, list[Phrase]]:
    """The phrases spoken one after another, ``lead`` s of silence first and ``gap`` s between them."""
    parts = [silence(lead).samples]
    phrases: list[Phrase] = []
    at = lead
    for text in texts:
        audio = speak(text)
        phrases.append(Phrase(text, at, at + onset(audio), at + audio.duration))
        parts += [audio.samples, silence(gap).samples]
        at += audio.duration + gap
    return PcmAudio(b"".join(parts)), phrases


def word_error_rate(reference: str, hypothesis: str) -> tuple[int, int]:
    """(edit distance in words, reference length): WER is their ratio."""
    ref, hyp = reference.lower().split(), hypothesis.lower().split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[len(hyp)], len(ref)
