"""Reading any recorded audio file (WebM/Ogg Opus segments, WAV, MP3...) as 16 kHz mono PCM for a backend."""

from __future__ import annotations

from pathlib import Path

import av

from roomtape.transcripts.stt.base import SAMPLE_RATE, PcmAudio, SttError


def load_pcm(path: Path, sample_rate: int = SAMPLE_RATE) -> PcmAudio:
    """Decode the first audio stream of ``path`` and resample it to mono ``sample_rate`` Hz.

    Blocking (decoding costs CPU): run it in a thread. A file with no audio stream gives empty audio.

    Raises:
        SttError: The file cannot be opened or decoded (not retryable: the bytes will not change).
    """
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise SttError(f"cannot open audio {path.name}: {exc}", retryable=False) from exc
    with container:
        if not container.streams.audio:
            return PcmAudio(b"", sample_rate)
        resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
        chunks: list[bytes] = []
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().tobytes())
        except av.error.FFmpegError as exc:
            # A segment cut short by a crash ends in a torn frame: keep what decoded before it.
            if not chunks:
                raise SttError(f"cannot decode audio {path.name}: {exc}", retryable=False) from exc
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().tobytes())
    return PcmAudio(b"".join(chunks), sample_rate)
