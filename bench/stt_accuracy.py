"""Accuracy and word alignment of the embedded speech-to-text backend (PocketSphinx) on espeak-ng speech.

A fixed set of meeting-like sentences (:data:`TEXTS`) is spoken by espeak-ng (voice ``en-us``) and
transcribed; the word error rate (WER = word edits / reference words, summed over the set) is reported per
condition, never asserted:

- ``clean_140wpm`` / ``clean_175wpm``: espeak at 140 words per minute (meeting pace) and at its default 175;
- ``opus_webm_140wpm``: the same speech through roomtape's own track recorder (20 ms Opus packets in a WebM
  segment, as a meeting records it) and decoded back with ``load_pcm``, i.e. what the recording job hears;
- ``office_noise_10db``: mixed with real recorded office ambience at 10 dB SNR (``office-ambience.ogg``,
  shipped in the ``livekit-agents`` wheel; skipped when it is not installed).

Baseline in the same run: the same clean audio through the OpenAI-compatible backend against a local
FastAPI server that runs the same PocketSphinx (``tests/contract/stt_server.py``): WER must match (same
engine) and the time ratio is the HTTP path's overhead. CPU seconds per audio second (real-time factor) are
reported for each.

Alignment: the phrases of :data:`ALIGN_PHRASES` are concatenated with 1.2 s silences; each phrase's onset is
measured in the audio by energy (first 10 ms frame above 5 % of the loudest), and compared with the start of
the first word recognised inside the phrase. ``tests/integration/transcripts/test_stt_alignment.py`` asserts
the 100 ms bound.

Usage: ``.venv/bin/python bench/stt_accuracy.py [--out bench/results/stt_accuracy.json]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.contract.stt_server import SttServer  # noqa: E402
from tests.speech import concatenate, speak, word_error_rate  # noqa: E402

from roomtape.transcripts.stt import OpenAITranscriptions, PcmAudio, PocketSphinx, load_pcm  # noqa: E402

TEXTS = [
    "good morning everyone",
    "let us start the meeting",
    "can you hear me",
    "i will share my screen",
    "the report is due on friday",
    "we need more time to finish the project",
    "please send me the slides after the call",
    "i agree with that",
    "what do you think about the new design",
    "the budget was approved last week",
    "my name is john and i live in new york",
    "we should start now",
    "the customer asked for a discount",
    "thank you very much",
    "i have a question about the schedule",
    "let us meet again next monday",
    "the server was down for two hours",
    "could you repeat that please",
    "the meeting starts at nine in the morning",
    "see you tomorrow",
]
ALIGN_PHRASES = [
    "good morning everyone",
    "we should start now",
    "i agree with that",
    "see you tomorrow",
    "thank you very much",
    "can you hear me",
    "the budget was approved last week",
    "send the report",
    "hello there",
    "could you repeat that please",
]


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _with_lead(audio: PcmAudio, lead: float = 0.5) -> PcmAudio:
    silence = b"\x00\x00" * int(lead * audio.sample_rate)
    return PcmAudio(silence + audio.samples + silence, audio.sample_rate)


def _through_opus(audio: PcmAudio) -> PcmAudio:
    """``audio`` recorded as a meeting records it (Opus packets into a WebM segment), decoded back."""
    from tests.integration.recording.compose_media import RATE, SESSION, record_audio

    x = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64) / 32768
    up = np.interp(np.arange(len(x) * 3) / 3, np.arange(len(x)), x)
    with tempfile.TemporaryDirectory() as tmp:
        record_audio(Path(tmp), "p", np.concatenate([up, np.zeros(960)]), [(0.0, len(up) / RATE)])
        (segment,) = Path(tmp, SESSION, "p", "audio").glob("*.webm")
        return load_pcm(segment)


def _noise() -> np.ndarray | None:
    try:
        import livekit.agents

        path = Path(livekit.agents.__file__).parent / "resources" / "office-ambience.ogg"
    except ImportError:
        return None
    return np.frombuffer(load_pcm(path).samples, dtype=np.int16).astype(np.float64) if path.is_file() else None


def _mix(audio: PcmAudio, noise: np.ndarray, snr_db: float, offset: int) -> PcmAudio:
    x = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64)
    n = np.resize(np.roll(noise, -offset), len(x))
    speech_power = np.mean(x[np.abs(x) > 0.05 * np.abs(x).max()] ** 2)
    gain = np.sqrt(speech_power / (np.mean(n**2) * 10 ** (snr_db / 10)))
    return PcmAudio(np.clip(x + gain * n, -32768, 32767).astype(np.int16).tobytes())


async def _run(backend: Any, audios: list[PcmAudio]) -> tuple[list[str], float, float]:
    cpu0, wall0 = _cpu(), time.perf_counter()
    hyps = [(await backend.transcribe(a)).text for a in audios]
    return hyps, _cpu() - cpu0, time.perf_counter() - wall0


def _score(name: str, hyps: list[str], audios: list[PcmAudio], cpu: float, wall: float) -> dict[str, Any]:
    errors = words = 0
    for ref, hyp in zip(TEXTS, hyps, strict=True):
        e, n = word_error_rate(ref, hyp)
        errors, words = errors + e, words + n
    seconds = sum(a.duration for a in audios)
    row = {
        "wer": round(errors / words, 4),
        "word_errors": errors,
        "reference_words": words,
        "audio_seconds": round(seconds, 2),
        "cpu_seconds": round(cpu, 2),
        "wall_seconds": round(wall, 2),
        "cpu_seconds_per_audio_second": round(cpu / seconds, 3),
    }
    print(name, json.dumps(row), flush=True)
    return row


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stt_accuracy.json")
    args = parser.parse_args()
    sphinx = PocketSphinx(in_process=True)  # in this process, so that os.times() counts its CPU
    await sphinx.transcribe(speak("warm up"))  # load the model outside the measurements
    clean = [_with_lead(speak(t)) for t in TEXTS]
    conditions: dict[str, Any] = {}
    hyps, cpu, wall = await _run(sphinx, clean)
    conditions["clean_140wpm"] = _score("clean_140wpm", hyps, clean, cpu, wall)
    conditions["clean_140wpm"]["sentences"] = [{"reference": r, "heard": h} for r, h in zip(TEXTS, hyps, strict=True)]
    fast = [_with_lead(speak(t, speed=175)) for t in TEXTS]
    hyps, cpu, wall = await _run(sphinx, fast)
    conditions["clean_175wpm"] = _score("clean_175wpm", hyps, fast, cpu, wall)
    opus = [_through_opus(a) for a in clean]
    hyps, cpu, wall = await _run(sphinx, opus)
    conditions["opus_webm_140wpm"] = _score("opus_webm_140wpm", hyps, opus, cpu, wall)
    noise = _noise()
    if noise is not None:
        noisy = [_mix(a, noise, 10.0, i * 16000 * 3) for i, a in enumerate(clean)]
        hyps, cpu, wall = await _run(sphinx, noisy)
        conditions["office_noise_10db"] = _score("office_noise_10db", hyps, noisy, cpu, wall)

    server = SttServer().start()
    http = OpenAITranscriptions(server.url, "pocketsphinx")
    try:
        await http.transcribe(speak("warm up"))
        hyps, cpu, wall = await _run(http, clean)
    finally:
        await http.aclose()
        server.stop()
    # The server runs in this process (a thread): its CPU is included, so the ratio is the HTTP overhead.
    baseline = _score("baseline_http_same_engine", hyps, clean, cpu, wall)

    audio, phrases = concatenate(ALIGN_PHRASES, gap=1.2, lead=1.0)
    heard = await sphinx.transcribe(audio)
    alignment = []
    for p in phrases:
        inside = [w for w in heard.words if p.start - 0.1 <= w.start < p.end]
        first = inside[0] if inside else None
        alignment.append(
            {
                "phrase": p.text,
                "onset_measured": round(p.onset, 3),
                "first_word": first.word if first else None,
                "first_word_start": first.start if first else None,
                "error_ms": round((first.start - p.onset) * 1000) if first else None,
            }
        )
    errors_ms = [abs(a["error_ms"]) for a in alignment if a["error_ms"] is not None]

    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "backend": sphinx.name,
        "espeak_voice": "en-us",
        "sentences": len(TEXTS),
        "conditions": conditions,
        "baseline_http_same_engine": baseline,
        "ratios": {
            "wer_http_over_embedded": round(baseline["wer"] / max(conditions["clean_140wpm"]["wer"], 1e-9), 3),
            "wall_http_over_embedded": round(baseline["wall_seconds"] / conditions["clean_140wpm"]["wall_seconds"], 3),
        },
        "alignment": {
            "phrases": alignment,
            "within_100ms": sum(e <= 100 for e in errors_ms),
            "of": len(alignment),
            "median_abs_error_ms": float(np.median(errors_ms)) if errors_ms else None,
            "max_abs_error_ms": max(errors_ms) if errors_ms else None,
        },
        "notes": [
            "espeak-ng's formant voice is far from the speech PocketSphinx's acoustic model was trained on; "
            "WER on real voices differs (no package on this machine ships real speech with a reference "
            "transcript: livekit-agents' ambience files are noise only, used here as noise).",
            "An alignment error means the first word recognised in the phrase starts that far from the "
            "phrase's measured onset; a misrecognised first word (e.g. 'hello' heard as 'oh') moves it.",
        ],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("conditions",)}, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
