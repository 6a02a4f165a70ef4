"""Reading any recorded audio file (WebM/Ogg Opus segments, WAV, MP3...) as 16 kHz mono PCM for a backend."""

from __future__ import annotations

from pathlib import Path

import av

from roomtape.transcripts.stt.base import SAMPLE_RATE, PcmAudio, SttError


def load_pcm(path: Path, sample_rate: int = SAMPLE_RATE) -> PcmAudio:
    """Decode the first audio stream of ``path`` and resample it to mono ``sample_rate`` Hz.

    Sample 0 is the file's time 0, and a span without packets (a segment's gap: the sender stopped sending for
    a while) comes out as silence of its length, so word times found in the PCM are times in the file.
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
        written = 0  # samples so far
        try:
            for frame in container.decode(audio=0):
                if frame.time is not None:
                    behind = round(float(frame.time) * sample_rate) - written
                    if behind > sample_rate // 50:  # more than 20 ms (an Opus frame) missing: a gap
                        chunks.append(b"\x00\x00" * behind)
                        written += behind
                for out in resampler.resample(frame):
                    data = out.to_ndarray().tobytes()
                    chunks.append(data)
                    written += len(data) // 2
        except av.error.FFmpegError as exc:
            # A segment cut short by a crash ends in a torn frame: keep what decoded before it.
            if not chunks:
                raise SttError(f"cannot decode audio {path.name}: {exc}", retryable=False) from exc
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().tobytes())
    return PcmAudio(b"".join(chunks), sample_rate)
