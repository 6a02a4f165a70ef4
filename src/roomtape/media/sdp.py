"""The few facts about an SDP offer or answer that the room needs before aiortc parses it.

aiortc fixes each transceiver's codec list while applying the remote description, so codec preferences
must be set on transceivers created *before* ``setRemoteDescription``; this module tells how many media
sections of which kind the offer has, and which codec an answer chose. It is not a general SDP parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["MediaSection", "parse_media_sections"]


@dataclass(slots=True)
class MediaSection:
    """One ``m=`` section of a session description."""

    kind: str
    """Media type: ``"audio"``, ``"video"`` or ``"application"``."""
    mid: str | None = None
    """Value of ``a=mid``, or None."""
    codecs: list[str] = field(default_factory=list)
    """Codec MIME types (``"video/VP8"``) in the section's payload-type order, RTX included."""
    direction: str = "sendrecv"
    """``sendrecv``, ``sendonly``, ``recvonly`` or ``inactive``."""


_DIRECTIONS = frozenset({"sendrecv", "sendonly", "recvonly", "inactive"})


def parse_media_sections(sdp: str) -> list[MediaSection]:
    """List the media sections of a session description in order.

    Args:
        sdp: Session description text.

    Returns:
        One :class:`MediaSection` per ``m=`` line.
    """
    sections: list[MediaSection] = []
    payload_types: list[list[str]] = []
    rtpmaps: list[dict[str, str]] = []
    for raw in sdp.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            sections.append(MediaSection(kind=parts[0] if parts else ""))
            payload_types.append(parts[3:])
            rtpmaps.append({})
        elif not sections:
            continue
        elif line.startswith("a=mid:"):
            sections[-1].mid = line[6:]
        elif line.startswith("a=rtpmap:"):
            pt, _, rest = line[9:].partition(" ")
            rtpmaps[-1][pt] = rest.split("/")[0]
        elif line[2:] in _DIRECTIONS and line.startswith("a="):
            sections[-1].direction = line[2:]
    for section, pts, names in zip(sections, payload_types, rtpmaps, strict=True):
        section.codecs = [f"{section.kind}/{names[pt]}" for pt in pts if pt in names]
    return sections
