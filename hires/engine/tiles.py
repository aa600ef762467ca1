"""Tile grids: owned cores that partition the image, feathered blend regions, context margins.

Coordinates are (y0, y1, x0, x1), half-open.  For seamless textures they may run past the
image edges and are read and written modulo the image size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALIGN = 16  # the deepest VGG stride used: tile origins on multiples of it keep pooling exact


@dataclass(frozen=True)
class Tile:
    index: int
    core: tuple[int, int, int, int]     # owned: counted once in the global statistics
    blend: tuple[int, int, int, int]    # written back into the canvas, feathered
    region: tuple[int, int, int, int]   # optimised: blend plus fixed context around it
    ramps: tuple[int, int, int, int]    # feather widths (top, bottom, left, right) inside blend
    wrap: bool = False                  # the grid wraps around (a seamless canvas): context reads wrap

    @property
    def shape(self) -> tuple[int, int]:
        return self.region[1] - self.region[0], self.region[3] - self.region[2]


def _cuts(n: int, tile: int, shift: int, wrap: bool, overlap: int = 0) -> list[tuple[int, int]]:
    if tile >= n:
        return [(0, n)]
    if wrap:
        pts = list(range(shift, shift + n, tile)) + [shift + n]
    else:
        pts = [0] + [p for p in range(shift, n, tile) if p > 0] + [n]
    # fold a sliver (< quarter tile) at the end into its neighbour; on a wrapped grid also one
    # narrower than its two feather ramps (2 x overlap each side of the cut), which would overlap
    # inside it and count its pixels more than once
    if len(pts) > 2 and (pts[-1] - pts[-2] < tile // 4 or wrap and pts[-1] - pts[-2] < 2 * overlap):
        del pts[-2]
    return list(zip(pts[:-1], pts[1:]))


def _axis(n: int, tile: int, overlap: int, margin: int, shift: int, wrap: bool):
    cuts = _cuts(n, tile, shift, wrap, overlap)
    single = len(cuts) == 1
    out = []
    for i, (c0, c1) in enumerate(cuts):
        lo_nb = not single and (wrap or i > 0)
        hi_nb = not single and (wrap or i < len(cuts) - 1)
        b0, b1 = c0 - (overlap if lo_nb else 0), c1 + (overlap if hi_nb else 0)
        if single:
            r0, r1 = 0, n
        elif wrap:
            r0, r1 = b0 - margin, b1 + margin
            if r1 - r0 > n:  # never wider than the image itself: one period, on the deepest stride
                r0 = c0 - _aligned_context(n - (c1 - c0), overlap)
                r1 = r0 + n
        else:
            r0, r1 = max(0, b0 - margin), min(n, b1 + margin)
        out.append(((c0, c1), (b0, b1), (r0, r1), (2 * overlap if lo_nb else 0, 2 * overlap if hi_nb else 0)))
    return out


def _aligned_context(spare: int, overlap: int) -> int:
    """Context before the core of a wrapped region one period wide (``spare`` px of the period
    besides the core): a multiple of ALIGN nearest half of it that leaves ``overlap`` px on each
    side for the blend area, so the tile's pooled maps line up with the canvas's."""
    ok = [k for k in range(0, spare + 1, ALIGN) if overlap <= k <= spare - overlap]
    return min(ok, key=lambda k: abs(k - spare / 2)) if ok else spare // 2


def grid(width: int, height: int, tile: int, overlap: int, margin: int, seamless: bool = False,
         shift: int = 0) -> list[Tile]:
    """Tiles of ``tile`` px cores covering a ``width`` x ``height`` image.

    ``overlap`` px on each side of a cut are feathered between the two tiles; ``margin`` px of
    context beyond that are fed to the network but held fixed.  ``shift`` moves the grid (the
    second pass uses half a tile).  Sizes are rounded to multiples of ALIGN so that pooled
    feature maps of a tile line up with those of the whole image.
    """
    tile = max(ALIGN, tile // ALIGN * ALIGN)
    overlap = min(overlap, tile // 4)
    margin = -(-margin // ALIGN) * ALIGN
    overlap_r = -(-overlap // ALIGN) * ALIGN if overlap else 0
    shift = shift // ALIGN * ALIGN
    # the cut positions are what must align; ramps may be any width
    ys = _axis(height, tile, overlap, margin + overlap_r - overlap, shift, seamless)
    xs = _axis(width, tile, overlap, margin + overlap_r - overlap, shift, seamless)
    tiles = []
    for (cy, by, ry, rampy) in ys:
        for (cx, bx, rx, rampx) in xs:
            tiles.append(Tile(len(tiles), (*cy, *cx), (*by, *bx), (*ry, *rx), (*rampy, *rampx), seamless))
    return tiles


def cut_fractions(tiles: list[Tile], width: int, height: int) -> tuple[list[float], list[float]]:
    """Where a grid's cuts between tiles fall, as fractions of the frame: (rows, columns).  The
    frame's own edges are cuts only where the grid wraps with more than one tile on that axis."""
    def axis(starts: set[int], n: int) -> list[float]:
        return sorted(c / n for c in starts if len(starts) > 1 and (tiles[0].wrap or c > 0))
    return axis({t.core[0] for t in tiles}, height), axis({t.core[2] for t in tiles}, width)


def stagger(width: int, height: int, tile: int, earlier: tuple[list[float], list[float]]) -> int:
    """The shift of a wrapped grid that keeps its cuts farthest (in px) from ``earlier`` cuts
    (fractions of the frame, rows and columns, of the coarser levels).  On a seamless canvas every
    shift costs the same, and cuts of successive levels at one place add up: at 8192 px with
    768 px tiles every level cut at 3/4 of the frame and left one soft band there."""
    tile = max(ALIGN, tile // ALIGN * ALIGN)

    def gap(shift: int) -> float:
        best = float("inf")
        for n, fractions in ((height, earlier[0]), (width, earlier[1])):
            cuts = _cuts(n, tile, shift, True)
            for c0, _ in cuts if len(cuts) > 1 else ():
                for f in fractions:
                    d = abs(c0 / n - f) % 1.0
                    best = min(best, min(d, 1.0 - d) * n)
        return best

    return max(range(0, tile, ALIGN), key=lambda shift: (gap(shift), -shift))


def take(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """Copy of image[y0:y1, x0:x1], reading modulo the image size where the box runs past it."""
    y0, y1, x0, x1 = box
    h, w = image.shape[:2]
    if 0 <= y0 and y1 <= h and 0 <= x0 and x1 <= w:
        return np.array(image[y0:y1, x0:x1])
    return image[np.arange(y0, y1) % h][:, np.arange(x0, x1) % w]


def padding(tile: Tile, width: int, height: int) -> str:
    """The network's padding for a tile.  A tile with context on every side pads with zeros,
    the cheapest: its context margin is at least the receptive radius, so the padding never
    reaches an owned activation.  A tile at the frame edge needs the frame's own rule there:
    reflect for an image that does not wrap (a photo, or a texture's example), circular where
    the grid wraps and the tile spans a whole period."""
    y0, y1, x0, x1 = tile.region
    if tile.wrap:
        return "circular" if y1 - y0 >= height or x1 - x0 >= width else "zeros"
    return "reflect" if y0 <= 0 or x0 <= 0 or y1 >= height or x1 >= width else "zeros"


def blend_window(t: Tile) -> np.ndarray:
    from hires.kernels import feather_window
    y0, y1, x0, x1 = t.blend
    return feather_window(y1 - y0, x1 - x0, *t.ramps)


def ownership(tile: Tile, strides) -> dict[int, np.ndarray]:
    """The tile's ownership weight at every position of its region's feature map, per stride.

    The weight is the tile's blend window (zero outside its blend area).  Windows of all tiles sum
    to one at every pixel, and average pooling keeps that true on each layer's grid (tile origins
    are aligned to the deepest stride), so every position of the whole image counts exactly once
    in the global statistics, split across tiles where they overlap, just as the pixels are blended.
    """
    h, w = tile.shape
    pix = np.zeros((h, w), np.float32)
    by0, by1, bx0, bx1 = tile.blend
    ry0, rx0 = tile.region[0], tile.region[2]
    pix[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0] = blend_window(tile)
    out = {}
    for s in set(strides):
        out[s] = block_mean(pix, s)
    return out


def block_mean(a: np.ndarray, s: int) -> np.ndarray:
    """The mean of each s x s block of (h, w) ``a``; a block the edge cuts short (an odd side, as
    the networks' pooling keeps it) is the mean of the pixels it has."""
    h, w = a.shape
    hs, ws = -(-h // s), -(-w // s)
    full = np.zeros((hs * s, ws * s), np.float64)
    full[:h, :w] = a
    sums = full.reshape(hs, s, ws, s).sum(axis=(1, 3))
    rows = np.minimum(s, h - np.arange(hs) * s)
    cols = np.minimum(s, w - np.arange(ws) * s)
    return (sums / (rows[:, None] * cols[None, :])).astype(np.float32)


def owned_box(wmap: np.ndarray) -> tuple[slice, slice]:
    """The smallest rectangle holding every position with weight > 0.  Slicing activations to it
    (instead of gathering positions) keeps the backward pass a cheap copy, not a scatter."""
    rows = np.flatnonzero(wmap.any(axis=1))
    cols = np.flatnonzero(wmap.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def blend_mask(tile: Tile) -> np.ndarray:
    """1 on the tile's blend area, 0 on its fixed context, as an (h, w) array of its region."""
    mask = np.zeros(tile.shape, np.float32)
    by0, by1, bx0, bx1 = tile.blend
    ry0, rx0 = tile.region[0], tile.region[2]
    mask[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0] = 1.0
    return mask


def blend_part(region: np.ndarray, tile: Tile) -> np.ndarray:
    """The blend area of an (h, w, C) array covering the tile's region."""
    by0, by1, bx0, bx1 = tile.blend
    ry0, rx0 = tile.region[0], tile.region[2]
    return region[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
