"""Previews of a render as it takes shape (``--snapshots DIR``).

After each level, and every ``every`` tiles of a tiled level, the canvas is downscaled by libvips
straight from its buffer (RAM or disk-backed: read in regions, never copied at full size) and
written atomically.  Names sort in render order and carry the render's key, so a file of that
name is a snapshot of this same render (one an interrupted run wrote), never somebody else's:

    NAME-KEY-L02-P0-T0008.jpg   level 2, pass 0, after 8 tiles
    NAME-KEY-L02-end.jpg        level 2 finished
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hires.core import io, output
from hires.core.canvas import release
from hires.core.errors import OutputError
from hires.core.progress import Note, Snapshot


@dataclass
class Snapshots:
    folder: Path
    stem: str
    key: str
    size: int = 1024
    every: int = 8
    progress: object = None

    @classmethod
    def open(cls, folder, stem: str, key: str, size: int, every: int, progress) -> "Snapshots":
        folder = Path(folder)
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputError(f"--snapshots: cannot create {str(folder)!r} ({e.strerror or e})") from None
        if size < 16 or every < 1:
            raise OutputError("--snapshot-size must be 16 px or more and --snapshot-every 1 or more")
        return cls(folder, stem, key[:8], size, every, progress)

    def level_done(self, canvas: np.ndarray, level: int) -> None:
        self._write(canvas, f"L{level:02d}-end", level, 0)

    def tile_done(self, level: int, pass_index: int):
        """The ``after_tile`` callback of one refine pass."""
        def after_tile(canvas: np.ndarray, done: int, n: int) -> None:
            if n > 1 and done < n and done % self.every == 0:
                self._write(canvas, f"L{level:02d}-P{pass_index}-T{done:04d}", level, done)
        return after_tile

    def _write(self, canvas: np.ndarray, tag: str, level: int, tile: int) -> None:
        h, w = canvas.shape[:2]
        scale = min(1.0, self.size / max(h, w))
        im = io.vips_from_array(canvas)
        if scale < 1.0:
            im = im.resize(scale, kernel="linear")
        path = self.folder / f"{self.stem}-{self.key}-{tag}.jpg"
        tmp = output.partial_path(path)
        try:
            output.create_exclusively(tmp)  # (never through a link planted at that name: that stays)
        except OSError as e:
            return self._failed(path, e)
        try:
            out = output.release_while_written((im * 255.0 + 0.5).cast("uchar").copy(interpretation="srgb"), canvas)
            out.jpegsave(str(tmp), Q=90)
            os.replace(tmp, path)
        except Exception as e:  # a preview never stops a render: say so and go on
            tmp.unlink(missing_ok=True)
            return self._failed(path, e)
        finally:
            release(canvas)
        if self.progress:
            self.progress(Snapshot(str(path), level, tile))

    def _failed(self, path: Path, e: Exception) -> None:
        if self.progress:
            self.progress(Note(f"--snapshots: could not write {path.name} ({e})"))
