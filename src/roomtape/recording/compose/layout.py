import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = ["Rect", "Tile", "TileSource", "arrange"]

TileSource = tuple[str, Literal["video", "screen_video"]]
"""A tile's picture: (participant id, which of their video tracks)."""

_GAP = 2  # px between tiles (even, so chroma planes stay aligned)


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle on the output picture; every coordinate even (4:2:0 chroma)."""

    x: int
    """Left edge."""
    y: int
    """Top edge."""
    w: int
    """Width."""
    h: int
    """Height."""


@dataclass(frozen=True, slots=True)
class Tile:
    """Where one participant's picture goes."""

    source: TileSource
    """Whose picture."""
    rect: Rect
    """The cell it is fitted into (aspect kept, letterboxed)."""


def _even(value: float) -> int:
    return int(value) & ~1


def _grid(sources: Sequence[TileSource], area: Rect) -> list[Tile]:
    n = len(sources)
    if not n:
        return []
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    cell_w, cell_h = area.w / cols, area.h / rows
    tiles = []
    for i, source in enumerate(sources):
        row, col = divmod(i, cols)
        in_row = min(cols, n - row * cols)
        offset = (cols - in_row) * cell_w / 2  # centre an incomplete last row
        x0, y0 = area.x + offset + col * cell_w, area.y + row * cell_h
        rect = Rect(_even(x0 + _GAP / 2), _even(y0 + _GAP / 2), _even(cell_w - _GAP), _even(cell_h - _GAP))
        tiles.append(Tile(source, rect))
    return tiles


def _strip(sources: Sequence[TileSource], area: Rect) -> list[Tile]:
    n = len(sources)
    if not n:
        return []
    cell_w = area.w / max(n, 4)
    x0 = area.x + (area.w - cell_w * n) / 2
    return [
        Tile(
            source,
            Rect(
                _even(x0 + i * cell_w + _GAP / 2), _even(area.y + _GAP / 2), _even(cell_w - _GAP), _even(area.h - _GAP)
            ),
        )
        for i, source in enumerate(sources)
    ]


def arrange(
    width: int,
    height: int,
    layout: Literal["grid", "active_speaker"],
    cameras: Sequence[str],
    screens: Sequence[str],
    speaker: str | None = None,
) -> list[Tile]:
    """Lay out the tiles of one output frame.

    - grid, no screen share: cameras in an even grid (incomplete last row centred).
    - active speaker, no screen share: the speaker fills the main area, the others sit in a strip
      along the bottom.
    - any screen share (both layouts): the shares fill the main area, every camera goes to the
      strip (the speaker first in active speaker).

    Args:
        width: Output width.
        height: Output height.
        layout: The layout.
        cameras: Present participants, in display order (each gets a camera tile, a placeholder if
            they have no picture).
        screens: Participants sharing a screen.
        speaker: The active speaker (active speaker layout).

    Returns:
        The tiles; main-area tiles first.
    """
    full = Rect(0, 0, width, height)
    if layout == "active_speaker" and speaker in cameras:
        others = [c for c in cameras if c != speaker]
        cameras = [speaker, *others] if speaker is not None else list(cameras)
    cams: list[TileSource] = [(c, "video") for c in cameras]
    shares: list[TileSource] = [(s, "screen_video") for s in screens]
    if shares:
        main, small = shares, cams
    elif layout == "active_speaker" and cams:
        main, small = cams[:1], cams[1:]
    else:
        return _grid(cams, full)
    if not small:
        return _grid(main, full)
    strip_h = _even(height / 4)
    return _grid(main, Rect(0, 0, width, height - strip_h)) + _strip(small, Rect(0, height - strip_h, width, strip_h))
