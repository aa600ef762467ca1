"""Feathered tile blending: accumulate ``window * tile`` and ``window``, normalise once."""
import numba
import numpy as np

from hires.kernels._config import CACHE, FASTMATH, PARALLEL


@numba.njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _blend_kernel(acc, wsum, tile, window, y0, x0):
    H, W, C = acc.shape
    h, w, _ = tile.shape
    # rows are disjoint between iterations of the parallel loop, so there are no races;
    # indices wrap around so that seamless textures can blend across the border
    for i in numba.prange(h):
        y = (y0 + i) % H
        for j in range(w):
            x = (x0 + j) % W
            wt = window[i, j]
            wsum[y, x] += wt
            for c in range(C):
                acc[y, x, c] += wt * tile[i, j, c]


@numba.njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _normalize_kernel(acc, wsum, out, y0, y1):
    W = acc.shape[1]
    C = acc.shape[2]
    for y in numba.prange(y0, y1):
        for x in range(W):
            s = wsum[y, x]
            inv = 1.0 / s if s > 0 else 0.0
            for c in range(C):
                out[y - y0, x, c] = acc[y, x, c] * inv


def blend_accumulate(acc, wsum, tile, window, y0, x0):
    """Add ``window * tile`` into ``acc`` and ``window`` into ``wsum`` at (y0, x0).

    ``acc`` is (H, W, C) float32, ``wsum`` (H, W) float32, ``tile`` (h, w, C),
    ``window`` (h, w).  Coordinates wrap modulo the canvas size.
    """
    if acc.ndim != 3 or wsum.shape != acc.shape[:2]:
        raise ValueError(f"acc must be (H, W, C) and wsum (H, W); got {acc.shape} and {wsum.shape}")
    tile = np.ascontiguousarray(tile, dtype=acc.dtype)
    window = np.ascontiguousarray(window, dtype=wsum.dtype)
    if tile.ndim != 3 or tile.shape[2] != acc.shape[2] or window.shape != tile.shape[:2]:
        raise ValueError(f"tile {tile.shape} and window {window.shape} do not match acc {acc.shape}")
    if tile.shape[0] > acc.shape[0] or tile.shape[1] > acc.shape[1]:
        raise ValueError(f"tile {tile.shape[:2]} is larger than the canvas {acc.shape[:2]}")
    _blend_kernel(acc, wsum, tile, window, int(y0), int(x0))


def blend_normalize(acc, wsum, y0=0, y1=None, out=None):
    """Return rows [y0, y1) of ``acc / wsum`` (0 where nothing was blended)."""
    y1 = acc.shape[0] if y1 is None else y1
    if out is None:
        out = np.empty((y1 - y0,) + acc.shape[1:], dtype=acc.dtype)
    _normalize_kernel(acc, wsum, out, int(y0), int(y1))
    return out


def feather_window(h, w, ramp_top, ramp_bottom, ramp_left, ramp_right):
    """Separable window: 1 inside, a raised-cosine ramp of the given widths at each side.

    A ramp of 0 leaves that side at full weight (an image border).  The ramp never reaches
    exactly 0, so every pixel of a tile carries some weight.
    """
    def ramp(n, a, b):
        r = np.ones(n, np.float64)
        if a > 0:
            t = (np.arange(a) + 0.5) / a
            r[:a] = np.minimum(r[:a], 0.5 - 0.5 * np.cos(np.pi * t))
        if b > 0:
            t = (np.arange(b) + 0.5) / b
            r[n - b:] = np.minimum(r[n - b:], (0.5 - 0.5 * np.cos(np.pi * t))[::-1])
        return r

    return np.outer(ramp(h, ramp_top, ramp_bottom), ramp(w, ramp_left, ramp_right)).astype(np.float32)
