"""Track recording: encoded frames in, WebM segment files and a timing manifest out.

Nothing here decodes or encodes media, imports the web framework or aiortc; everything is
synchronous and meant to run in a worker thread beside the event loop.
"""

from roomtape.recording.frame import CodecName, EncodedFrame
from roomtape.recording.manifest import SegmentEntry, TrackKind, TrackManifest
from roomtape.recording.repair import RepairError, RepairResult, needs_repair, repair
from roomtape.recording.rtptime import ClockMapping, RtpUnwrapper
from roomtape.recording.segmenter import TrackRecorder, track_directory
from roomtape.recording.writer import Gap, SegmentStats, TrackWriter

__all__ = [
    "ClockMapping",
    "CodecName",
    "EncodedFrame",
    "Gap",
    "RepairError",
    "RepairResult",
    "RtpUnwrapper",
    "SegmentEntry",
    "SegmentStats",
    "TrackKind",
    "TrackManifest",
    "TrackRecorder",
    "TrackWriter",
    "needs_repair",
    "repair",
    "track_directory",
]
