"""The embedded default backend: CMU PocketSphinx with the US English model its PyPI wheel ships.

Nothing is downloaded at run time, nothing leaves the machine. Accuracy is modest (a 2010s HMM/n-gram
recogniser: see ``bench/stt_accuracy.py`` for measured WER); word timings are good (10 ms frames), which is
what the transcript's alignment to the recording needs. Configure an OpenAI-compatible server
(``ROOMTAPE_STT_URL``) for Whisper-class accuracy.

PocketSphinx's decoder holds the GIL for the whole of a decode (measured: a 9 s decode stopped every other
thread of the process for 8 s), so a thread would freeze the server's event loop and the live media with it:
decoding runs in a worker process of its own (``spawn``ed, one per server, its decoder kept loaded), and
``transcribe`` only waits for it (the event loop's longest stall during a 12 s decode: 0.2 s, at load 10).
Audio is decoded in utterances of up to 40 s, cut at quiet moments; only stretches where PocketSphinx's
voice-activity endpointer hears speech are decoded, and only words overlapping speech are kept (the search
otherwise "hears" words in silence). Loading the model takes about two seconds, so the decoder is kept.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import re
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from roomtape.children import die_with_parent
from roomtape.transcripts.stt.base import (
    SAMPLE_RATE,
    PcmAudio,
    SpokenWord,
    SttError,
    SttOptions,
    Transcription,
    clean_words,
)

_FILLERS = re.compile(r"^(<s>|</s>|<sil>|\[.*\]|\+\+.*\+\+)$")
"""Sentence marks, silence and noise "words" of the CMU dictionary: not words anyone said."""
_VARIANT = re.compile(r"\(\d+\)$")
"""``the(2)``: the dictionary's second pronunciation of "the"."""


_pool: ProcessPoolExecutor | None = None
_pool_lock = threading.Lock()
_worker_backend: PocketSphinx | None = None
"""The decoder of a worker process (set in the worker, never in the server)."""


def _decoder_pool() -> ProcessPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            # spawn, not fork: the server has threads (aiortc, PyAV) that a forked child would inherit mid-flight.
            # The worker ends with the server: a killed server used to leave it waiting on its queue for good.
            _pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent
            )
        return _pool


def _reset_pool() -> None:
    global _pool
    with _pool_lock:
        if _pool is not None:
            _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def _decode_in_worker(samples: bytes, options: dict[str, Any]) -> Transcription:
    """Runs in the worker process: decode with that process's kept decoder."""
    global _worker_backend
    if _worker_backend is None:
        _worker_backend = PocketSphinx(options, in_process=True)
    return _worker_backend.transcribe_sync(PcmAudio(samples))


def _english(language: str | None) -> bool:
    return language is None or language.lower().split("-")[0] == "en"


class PocketSphinx:
    """The :class:`~roomtape.transcripts.stt.base.SpeechToText` backend that runs in-process, offline.

    Args:
        decoder_options: Extra ``pocketsphinx.Config`` options (``{"beam": 1e-60}`` etc.).
        in_process: Decode in a thread of this process instead of the worker process (benchmarks, the worker
            itself; never in a process with an event loop that must stay responsive).
    """

    name = "pocketsphinx/en-us"
    VAD_PAD_SECS = 0.3
    """Slack around the endpointer's speech spans: it decides on 0.3 s windows."""
    LOUD_DBFS = -35.0
    """A 10 ms frame louder than this counts as speech even if the endpointer disagrees."""
    MAX_UTTERANCE_SECS = 40.0
    """Longest stretch decoded as one utterance (a search over minutes of audio costs memory and time)."""

    def __init__(self, decoder_options: dict[str, Any] | None = None, in_process: bool = False) -> None:
        self._options = dict(decoder_options or {})
        self._in_process = in_process
        self._lock = threading.Lock()
        self._decoder: Any = None

    def _get_decoder(self) -> Any:
        if self._decoder is None:
            from pocketsphinx import Decoder

            self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", **self._options)
        return self._decoder

    async def transcribe(self, audio: PcmAudio, options: SttOptions = SttOptions()) -> Transcription:
        """Recognise ``audio`` (in a worker thread).

        Raises:
            SttError: ``options.language`` is not English (the wheel ships the US English model only).
        """
        if not _english(options.language):
            raise SttError(f"pocketsphinx has no model for language {options.language!r}", retryable=False)
        if audio.sample_rate != SAMPLE_RATE:
            raise SttError(f"pocketsphinx needs {SAMPLE_RATE} Hz audio, got {audio.sample_rate}", retryable=False)
        if self._in_process:
            return await asyncio.to_thread(self.transcribe_sync, audio)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(_decoder_pool(), _decode_in_worker, audio.samples, self._options)
        except BrokenProcessPool:
            _reset_pool()  # the worker died (killed, out of memory): the next call starts a new one
            raise SttError("the pocketsphinx worker process died", retryable=True) from None

    def transcribe_sync(self, audio: PcmAudio) -> Transcription:
        """:meth:`transcribe` on the calling thread (holding the GIL throughout: see the module docstring)."""
        words: list[SpokenWord] = []
        with self._lock:
            decoder = self._get_decoder()
            frame_rate = float(decoder.config["frate"])
            speech = self._speech_spans(audio)
            for start, pcm in self._regions(audio):
                end = start + len(pcm) / 2 / SAMPLE_RATE
                if not any(a < end and b > start for a, b in speech):
                    continue  # the search finds "words" in pure silence ("dog"): decode only where speech is
                decoder.start_utt()
                decoder.process_raw(pcm, full_utt=True)
                decoder.end_utt()
                if decoder.hyp() is None:
                    continue
                for seg in decoder.seg():
                    w_start, w_end = start + seg.start_frame / frame_rate, start + (seg.end_frame + 1) / frame_rate
                    if _FILLERS.match(seg.word) or not any(a < w_end and b > w_start for a, b in speech):
                        continue
                    words.append(SpokenWord(_VARIANT.sub("", seg.word), w_start, w_end, round(float(seg.prob), 4)))
        timed = clean_words(words, audio.duration)
        return Transcription(
            text=" ".join(w.word for w in timed),
            words=timed,
            duration=audio.duration,
            language="en",
            backend=self.name,
        )

    def _speech_spans(self, audio: PcmAudio) -> list[tuple[float, float]]:
        """Where PocketSphinx's voice-activity endpointer hears speech, widened by its 0.3 s decision window."""
        from pocketsphinx import Segmenter

        if not audio.samples:
            return []
        segmenter = Segmenter(sample_rate=SAMPLE_RATE, vad_mode=0)  # 0: the loosest, keeps quiet speech
        spans = [(float(s.start_time), float(s.end_time)) for s in segmenter.segment(io.BytesIO(audio.samples))]
        # The endpointer misses speech that reached us through a browser's processing (AGC, noise suppression,
        # Opus at low levels) now and then; loud stretches count as well (digital silence and a quiet room never
        # reach LOUD_DBFS, so they still give no words).
        samples = np.frombuffer(audio.samples, dtype=np.int16).astype(np.float64)
        hop = SAMPLE_RATE // 100
        frames = samples[: len(samples) // hop * hop].reshape(-1, hop)
        loud = np.sqrt((frames**2).mean(axis=1)) > 32768 * 10 ** (self.LOUD_DBFS / 20)
        spans += [(i / 100, (i + 1) / 100) for i in np.flatnonzero(loud)]
        return [(a - self.VAD_PAD_SECS, b + self.VAD_PAD_SECS) for a, b in spans]

    def _regions(self, audio: PcmAudio) -> list[tuple[float, bytes]]:
        """The audio in utterances of at most :attr:`MAX_UTTERANCE_SECS`, as (start seconds, samples).

        Each is cut at the quietest 10 ms in its last quarter, so a cut falls between words. Decoding whole
        stretches, silences included, is what the model does best: cutting at every pause (PocketSphinx's own
        endpointer) measured worse on both words and timings, as each short utterance starts with no acoustic
        context (bench/stt_accuracy.py).
        """
        samples = np.frombuffer(audio.samples, dtype=np.int16)
        limit = int(self.MAX_UTTERANCE_SECS * SAMPLE_RATE)
        hop = SAMPLE_RATE // 100
        out: list[tuple[float, bytes]] = []
        at = 0
        while at < len(samples):
            end = len(samples)
            if end - at > limit:
                window = samples[at + limit * 3 // 4 : at + limit].astype(np.float64)
                frames = window[: len(window) // hop * hop].reshape(-1, hop)
                end = at + limit * 3 // 4 + int(np.argmin((frames**2).mean(axis=1))) * hop + hop // 2
            out.append((at / SAMPLE_RATE, samples[at:end].tobytes()))
            at = end
        return out

    async def aclose(self) -> None:
        """Nothing to release: the decoder holds no connections and stays loaded for the next call."""

    def unload(self) -> None:
        """Free the decoder's model (about 40 MB); the next call loads it again."""
        with self._lock:
            self._decoder = None
