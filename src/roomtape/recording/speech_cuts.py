"""Where live transcription cuts a participant's audio into segments, from packet sizes alone.

The transcription spool (:class:`roomtape.recording.service.RecordingService` with a ``transcriber``; not the
recording spool of :mod:`roomtape.recording.spool`) writes audio tracks
like a track recording, but its segments exist only to be transcribed while the meeting goes on, so a
segment must close soon after someone stopped speaking, also for a participant who never mutes. Nothing is
decoded on the media path, so speech is told from silence by the size of the Opus packets:

- a packet of at most :data:`SILENT_BYTES` is digital silence or DTX comfort noise (libopus codes a silent
  20 ms frame in 3 bytes): it is not spooled, so a pause longer than the recorder's gap closes the segment
  (the recorder's idle check) and the next speech opens a new one;
- a segment still open after :data:`SOFT_SECONDS` (a microphone whose noise floor never codes as silence)
  is cut before the next packet well below the track's running average size (a pause between words), and
  after :data:`HARD_SECONDS` before any packet.
"""

from __future__ import annotations

from typing import Final

from roomtape.recording.frame import EncodedFrame

__all__ = ["HARD_SECONDS", "SILENT_BYTES", "SOFT_SECONDS", "SpeechCutter"]

SILENT_BYTES: Final = 8
"""Opus packets this small carry no sound worth transcribing (silence, DTX)."""
SOFT_SECONDS: Final = 15.0
"""From this segment length on, the next quiet packet starts a new segment."""
HARD_SECONDS: Final = 30.0
"""No spool segment is longer (the transcript of a long monologue still arrives every half minute)."""
QUIET_RATIO: Final = 0.5
"""A packet smaller than this share of the running average size counts as a quiet moment."""
_AVERAGE_WEIGHT: Final = 0.02
"""Weight of each new packet in the running average (about the last second of packets)."""


class SpeechCutter:
    """Per track: which packets the spool writes, and before which one it starts a new segment."""

    def __init__(self) -> None:
        self._average: float | None = None

    def keep(self, frame: EncodedFrame) -> bool:
        """Whether to spool the packet (False for silence)."""
        return len(frame.data) > SILENT_BYTES

    def cut_before(self, frame: EncodedFrame, open_since: float | None) -> bool:
        """Whether the open segment (first frame at ``open_since``) ends before this kept packet."""
        size = len(frame.data)
        previous = self._average
        average = self._average = size if previous is None else previous + _AVERAGE_WEIGHT * (size - previous)
        if open_since is None:
            return False
        length = frame.arrival - open_since
        return length >= HARD_SECONDS or (length >= SOFT_SECONDS and size < QUIET_RATIO * average)
