"""Feathered tile blending: a running weighted mean of tiles, equal to accumulate-then-normalise."""
import numba
import numpy as np

from hires.kernels._config import CACHE, FASTMATH, PARALLEL


@numba.njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _blend_kernel(canvas, wsum, tile, window, y0, x0):
    H, W, C = canvas.shape
    h, w, _ = tile.shape
    # rows are disjoint between iterations of the parallel loop, so there are no races;
    # indices wrap around so that seamless textures can blend across the border
    for i in numba.prange(h):
        y = (y0 + i) % H
        for j in range(w):
            x = (x0 + j) % W
            wt = np.float64(window[i, j])
            old = np.float64(wsum[y, x])
            new = old + wt
            if new > 0.0:
                for c in range(C):
                    canvas[y, x, c] = (np.float64(canvas[y, x, c]) * old + wt * tile[i, j, c]) / new
                wsum[y, x] = new


def blend_into(canvas, wsum, tile, window, y0, x0):
    """Blend ``tile`` into ``canvas`` at (y0, x0) with a feathered ``window``.

    ``canvas`` holds the weighted mean of every tile blended so far where ``wsum > 0`` (its
    old value is ignored where ``wsum == 0``); ``wsum`` holds the weight sum.  After all tiles,
    ``canvas`` equals sum(window * tile) / sum(window): the accumulate-then-normalise-once
    result, kept normalised as it goes so that no second full-size float buffer is needed and
    later tiles can read earlier ones.  ``canvas`` (H, W, C) float32, ``wsum`` (H, W) float32,
    ``tile`` (h, w, C), ``window`` (h, w); coordinates wrap modulo the canvas size.
    """
    if canvas.ndim != 3 or wsum.shape != canvas.shape[:2]:
        raise ValueError(f"canvas must be (H, W, C) and wsum (H, W); got {canvas.shape} and {wsum.shape}")
    tile = np.ascontiguousarray(tile, dtype=canvas.dtype)
    window = np.ascontiguousarray(window, dtype=wsum.dtype)
    if tile.ndim != 3 or tile.shape[2] != canvas.shape[2] or window.shape != tile.shape[:2]:
        raise ValueError(f"tile {tile.shape} and window {window.shape} do not match canvas {canvas.shape}")
    if tile.shape[0] > canvas.shape[0] or tile.shape[1] > canvas.shape[1]:
        raise ValueError(f"tile {tile.shape[:2]} is larger than the canvas {canvas.shape[:2]}")
    _blend_kernel(canvas, wsum, tile, window, int(y0), int(x0))


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
