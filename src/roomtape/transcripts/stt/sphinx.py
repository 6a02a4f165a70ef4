"""The embedded default backend: CMU PocketSphinx with the US English model its PyPI wheel ships.

Nothing is downloaded at run time, nothing leaves the machine. Accuracy is modest (a 2010s HMM/n-gram
recogniser: see ``bench/stt_accuracy.py`` for measured WER); word timings are good (10 ms frames), which is
what the transcript's alignment to the recording needs. Configure an OpenAI-compatible server
(``ROOMTAPE_STT_URL``) for Whisper-class accuracy.

The audio is first split at silences by PocketSphinx's own voice-activity endpointer, and each speech region
is decoded as one utterance: decoding cost then follows speech, not file length, and a long pause cannot pull a
word's time across it. Decoding runs in a worker thread, one decoder per backend (loading the model takes
about two seconds, so the decoder is kept).
"""

from __future__ import annotations

import asyncio
import io
import re
import threading
from typing import Any

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


def _english(language: str | None) -> bool:
    return language is None or language.lower().split("-")[0] == "en"


class PocketSphinx:
    """The :class:`~roomtape.transcripts.stt.base.SpeechToText` backend that runs in-process, offline.

    Args:
        vad_mode: Aggressiveness of the endpointer's voice-activity detection, 0 (keeps most) to 3.
        decoder_options: Extra ``pocketsphinx.Config`` options (``{"beam": 1e-60}`` etc.).
    """

    name = "pocketsphinx/en-us"

    def __init__(self, vad_mode: int = 0, decoder_options: dict[str, Any] | None = None) -> None:
        self._vad_mode = vad_mode
        self._options = dict(decoder_options or {})
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
        return await asyncio.to_thread(self.transcribe_sync, audio)

    def transcribe_sync(self, audio: PcmAudio) -> Transcription:
        """:meth:`transcribe` on the calling thread (for benchmarks and worker threads)."""
        words: list[SpokenWord] = []
        with self._lock:
            decoder = self._get_decoder()
            frame_rate = float(decoder.config["frate"])
            for start, pcm in self._regions(audio):
                decoder.start_utt()
                decoder.process_raw(pcm, full_utt=True)
                decoder.end_utt()
                if decoder.hyp() is None:
                    continue
                for seg in decoder.seg():
                    if _FILLERS.match(seg.word):
                        continue
                    words.append(
                        SpokenWord(
                            _VARIANT.sub("", seg.word),
                            start + seg.start_frame / frame_rate,
                            start + (seg.end_frame + 1) / frame_rate,
                            round(float(seg.prob), 4),
                        )
                    )
        timed = clean_words(words, audio.duration)
        return Transcription(
            text=" ".join(w.word for w in timed),
            words=timed,
            duration=audio.duration,
            language="en",
            backend=self.name,
        )

    def _regions(self, audio: PcmAudio) -> list[tuple[float, bytes]]:
        """Speech regions as (start seconds, samples), found by the endpointer."""
        from pocketsphinx import Segmenter

        if not audio.samples:
            return []
        segmenter = Segmenter(sample_rate=SAMPLE_RATE, vad_mode=self._vad_mode)
        return [(float(s.start_time), bytes(s.pcm)) for s in segmenter.segment(io.BytesIO(audio.samples))]

    async def aclose(self) -> None:
        """Nothing to release: the decoder holds no connections and stays loaded for the next call."""

    def unload(self) -> None:
        """Free the decoder's model (about 40 MB); the next call loads it again."""
        with self._lock:
            self._decoder = None
