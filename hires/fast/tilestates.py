"""Each tile's network state between the passes of a tiled feed-forward run.

The tiled transformer (hires.fast.fast) stops every tile at a norm layer until that layer's whole-image
statistics are known.  Kept here, a tile resumes where it stopped instead of running the network
again from its input: in RAM up to ``room`` bytes, then as files in a ``Buffers`` folder when there
is one (their pages handed back after each write and read), else not kept (the tile is resumed
from the last state that was).
"""
from __future__ import annotations

import numpy as np
import torch

from hires.core.canvas import Buffers, release


class TileStates:
    def __init__(self, tiles: int, room: float, buffers: Buffers | None = None):
        self.room = room
        self.buffers = buffers.on_disk() if buffers is not None and buffers.folder is not None else None
        self.kept: list[tuple[int, tuple | None]] = [(0, None)] * tiles
        self.ram = 0
        self.on_disk = 0  # states written to files (for reports and tests)

    def get(self, i: int) -> tuple[int, tuple | None]:
        """(k, state): tile ``i``'s state before norm k, or (0, None) when it starts from its input."""
        k, state = self.kept[i]
        if state is None or not any(isinstance(p, np.memmap) for p in state):
            return k, state
        loaded = tuple(None if p is None else torch.from_numpy(np.array(p)) for p in state)
        release(*(p for p in state if p is not None))
        return k, loaded

    def put(self, i: int, k: int, state: tuple) -> None:
        """Keep tile ``i``'s state before norm ``k`` (replacing what it had) if there is room."""
        size = self._ram_bytes(state)
        freed = self._ram_bytes(self.kept[i][1])
        if self.ram - freed + size <= self.room:
            self.drop(i)
            self.kept[i], self.ram = (k, state), self.ram + size
        elif self.buffers is not None:
            self.drop(i)
            self.kept[i] = (k, tuple(None if p is None else self._write(f"state{i}-{k}-{j}", p)
                                     for j, p in enumerate(state)))
            self.on_disk += 1

    def drop(self, i: int) -> None:
        k, state = self.kept[i]
        self.ram -= self._ram_bytes(state)
        for p in state or ():
            if isinstance(p, np.memmap):
                self.buffers.discard(p)
        self.kept[i] = (0, None)

    def _write(self, name: str, t: torch.Tensor) -> np.memmap:
        m = self.buffers.empty(name, tuple(t.shape))
        m[...] = t.detach().cpu().numpy()
        release(m)
        return m

    @staticmethod
    def _ram_bytes(state) -> int:
        return sum(p.numel() * p.element_size() for p in state or () if isinstance(p, torch.Tensor))
