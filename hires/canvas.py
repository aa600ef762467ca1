"""Full-resolution buffers of a level: in RAM when the plan says they fit, else disk-backed.

A disk-backed buffer is a file memmap in the work folder.  Pages touched while a tile is worked
on count toward the process's resident memory, so ``release`` hands them back to the page cache
after each tile (the data stays in the file); peak RSS then holds one tile's pages, not the
whole canvas.
"""
from __future__ import annotations

import mmap
from pathlib import Path

import numpy as np


class Buffers:
    """Allocates level buffers either with numpy (RAM) or as memmaps under ``folder``."""

    def __init__(self, folder: Path | None, disk: bool):
        self.folder, self.disk = folder, disk

    def empty(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if not self.disk:
            return np.empty(shape, np.float32)
        self.folder.mkdir(parents=True, exist_ok=True)
        return np.memmap(self.folder / f"{name}.f32", np.float32, mode="w+", shape=shape)

    def zeros(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = self.empty(name, shape)
        if not self.disk:  # a new file memmap is already zero-filled
            a.fill(0.0)
        return a


def path_of(arr: np.ndarray) -> Path | None:
    return Path(arr.filename) if isinstance(arr, np.memmap) and arr.filename else None


def release(*arrays: np.ndarray) -> None:
    """Drop the resident pages of disk-backed arrays (no-op for RAM arrays)."""
    for a in arrays:
        m = getattr(a, "_mmap", None) if isinstance(a, np.memmap) else None
        if m is not None:
            a.flush()
            m.madvise(mmap.MADV_DONTNEED)
