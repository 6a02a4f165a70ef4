from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
from av.video.frame import VideoFrame
from av.video.reformatter import VideoReformatter

from roomtape.recording.compose.layout import Rect, Tile, TileSource

__all__ = ["Canvas"]

_BLACK = (16, 128, 128)  # limited-range YUV
_PLACEHOLDER = (40, 128, 128)  # dark grey: a participant without a picture

Plane = npt.NDArray[np.uint8]


def _planes(frame: VideoFrame) -> tuple[Plane, Plane, Plane]:
    """Views of a yuv420p frame's planes without their line padding."""
    views = []
    for plane in frame.planes:
        buf = np.frombuffer(memoryview(plane), np.uint8).reshape(plane.height, plane.line_size)
        views.append(buf[:, : plane.width])
    return views[0], views[1], views[2]


class Canvas:
    """Paints tiles onto a yuv420p picture and hands out frames for the encoder.

    Work is skipped where nothing changed: a source frame is scaled once per cell size and a
    picture whose tiles and frames are those of the previous one is not painted again.

    Args:
        width: Output width (even).
        height: Output height (even).
    """

    def __init__(self, width: int, height: int) -> None:
        self.width = width
        self.height = height
        self._buffer = np.empty((height * 3 // 2, width), np.uint8)
        quarter = height // 4
        self._y = self._buffer[:height]
        self._u = self._buffer[height : height + quarter].reshape(height // 2, width // 2)
        self._v = self._buffer[height + quarter :].reshape(height // 2, width // 2)
        self._scaled: dict[TileSource, tuple[VideoFrame, Rect, Rect, tuple[Plane, Plane, Plane]]] = {}
        # One scaler per tile source: `VideoFrame.reformat` builds a new SwsContext on every call.
        self._scalers: dict[TileSource, VideoReformatter] = {}
        self._last_key: tuple[object, ...] | None = None
        self._last_frame: VideoFrame | None = None
        self.painted = 0
        """Pictures painted (the rest were repeats)."""

    def render(self, tiles: Sequence[Tile], frames: Mapping[TileSource, VideoFrame | None]) -> VideoFrame:
        """Paint one output picture.

        Args:
            tiles: The layout.
            frames: The frame for each tile's source (None: a placeholder).

        Returns:
            A yuv420p frame (pts not set); the same object again if nothing changed.
        """
        key = tuple((tile, frames.get(tile.source)) for tile in tiles)  # holds the frames: no id reuse
        if key == self._last_key and self._last_frame is not None:
            return self._last_frame
        self._fill(Rect(0, 0, self.width, self.height), _BLACK)
        for tile in tiles:
            frame = frames.get(tile.source)
            if frame is None:
                self._scaled.pop(tile.source, None)
                self._fill(tile.rect, _PLACEHOLDER)
                continue
            box, planes = self._scale(tile, frame)
            y, u, v = planes
            self._y[box.y : box.y + box.h, box.x : box.x + box.w] = y
            cy, cx, ch, cw = box.y // 2, box.x // 2, box.h // 2, box.w // 2
            self._u[cy : cy + ch, cx : cx + cw] = u
            self._v[cy : cy + ch, cx : cx + cw] = v
        out = VideoFrame.from_ndarray(self._buffer, format="yuv420p")
        self._last_key, self._last_frame = key, out
        self.painted += 1
        return out

    def _scale(self, tile: Tile, frame: VideoFrame) -> tuple[Rect, tuple[Plane, Plane, Plane]]:
        cached = self._scaled.get(tile.source)
        if cached is not None and cached[0] is frame and cached[1] == tile.rect:
            return cached[2], cached[3]
        cell = tile.rect
        scale = min(cell.w / frame.width, cell.h / frame.height)
        w = max(2, int(frame.width * scale) & ~1)
        h = max(2, int(frame.height * scale) & ~1)
        box = Rect(cell.x + ((cell.w - w) // 2 & ~1), cell.y + ((cell.h - h) // 2 & ~1), w, h)
        if (w, h) == (frame.width, frame.height) and frame.format.name == "yuv420p":
            scaled = frame
        else:
            scaler = self._scalers.setdefault(tile.source, VideoReformatter())
            # AREA: the best of swscale's filters for shrinking, and among the fastest.
            scaled = scaler.reformat(frame, width=w, height=h, format="yuv420p", interpolation="AREA")
        planes = _planes(scaled)
        self._scaled[tile.source] = (frame, cell, box, planes)
        return box, planes

    def _fill(self, rect: Rect, color: tuple[int, int, int]) -> None:
        self._y[rect.y : rect.y + rect.h, rect.x : rect.x + rect.w] = color[0]
        cy, cx, ch, cw = rect.y // 2, rect.x // 2, rect.h // 2, rect.w // 2
        self._u[cy : cy + ch, cx : cx + cw] = color[1]
        self._v[cy : cy + ch, cx : cx + cw] = color[2]
