"""Seam measures: is a line through an image (a cut between tiles, the edge where a texture wraps)
visible?  Mean gradient magnitude in bands along the lines over that of the rest of the image:
1.0 means the lines cannot be told from anywhere else, below 1 a blurred line, above a hard edge.

The benchmarks and the tests use the same measure; it reads the image in strips of rows, so a
16384 px texture (or a memmap of one) needs no full-size float copy.
"""
from __future__ import annotations

import numpy as np


def band_ratio(image: np.ndarray, rows, cols, band: int = 8, strip: int = 1024) -> float:
    """Gradient magnitude (per-channel absolute differences, averaged over channels) within
    ``band`` px of the given ``rows`` and ``cols``, over that everywhere else."""
    h, w = image.shape[:2]
    col_mask = np.zeros(w - 1, bool)
    for c in cols:
        col_mask[max(0, c - band):max(0, c + band)] = True
    sums, counts = np.zeros(2), np.zeros(2)
    for y0 in range(0, h - 1, strip):
        y1 = min(h - 1, y0 + strip)
        block = np.asarray(image[y0:y1 + 1], np.float32)
        if block.ndim == 2:
            block = block[..., None]
        gy = np.abs(np.diff(block, axis=0)).mean(2)[:, :-1]
        gx = np.abs(np.diff(block[:-1], axis=1)).mean(2)
        mag = np.hypot(gy, gx)
        row_mask = np.zeros(y1 - y0, bool)
        for r in rows:
            row_mask[min(max(0, r - band - y0), y1 - y0):max(0, min(r + band - y0, y1 - y0))] = True
        mask = row_mask[:, None] | col_mask[None, :]
        sums += mag[mask].sum(), mag[~mask].sum()
        counts += mask.sum(), (~mask).sum()
    inside, outside = sums / np.maximum(counts, 1)
    return float(inside / outside)


def wrap_seam_ratio(image: np.ndarray, band: int = 8) -> float:
    """A texture rolled by half its size, so the edges where it wraps meet in the middle: the band
    ratio across those two lines (1.0 for a texture that tiles without a seam)."""
    h, w = image.shape[:2]
    rolled = np.roll(image, (h // 2, w // 2), axis=(0, 1))
    return band_ratio(rolled, [h // 2], [w // 2], band)


def _line_profiles(image: np.ndarray, strip: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of every row and of every column, channels averaged, in one read in strips of rows."""
    h = image.shape[0]
    rows, cols = [], np.zeros(image.shape[1])
    for y0 in range(0, h, strip):
        block = np.asarray(image[y0:y0 + strip], np.float64)
        block = block.mean(2) if block.ndim == 3 else block
        rows.append(block.mean(1))
        cols += block.sum(0)
    return np.concatenate(rows), cols / h


def _off_local_mean(p: np.ndarray, half: int) -> np.ndarray:
    """A profile less its running mean over +-``half`` positions (it wraps around the ends)."""
    k = 2 * half + 1
    padded = np.concatenate([p[-k:], p, p[:k]])
    return p - np.convolve(padded, np.ones(k) / k, "same")[k:-k]


def line_ratio(image: np.ndarray, rows, cols, band: int = 8, strip: int = 1024) -> float:
    """Is there a line along the given rows and columns (a step in brightness the whole way along
    a cut, which the gradient bands of ``band_ratio`` average away)?  Each row's and column's mean,
    less its local average: the largest such step within ``band`` px of the lines, over the median
    of the same largest step around every row and column, for the worst of the lines.  About 1
    when the lines are like any other (up to 1.5 over many lines); an image-wide dark or bright
    line along a cut gives 2 or more."""
    out = []
    for p, lines in zip(_line_profiles(image, strip), (rows, cols)):
        if not len(lines):
            continue
        n, k = len(p), 2 * band + 1
        step = np.abs(_off_local_mean(p, band))
        window = np.lib.stride_tricks.sliding_window_view(np.concatenate([step[-band:], step, step[:band]]), k)
        near = window.max(1)  # the largest step within band px of each position
        out.extend(near[np.asarray(sorted(lines)) % n] / max(np.median(near), 1e-12))
    return float(np.max(out)) if out else 1.0


def soft_band(image: np.ndarray, rows, cols, width: int = 16, strip: int = 1024) -> float:
    """Is there a soft band along the given rows and columns (a brightness change some ``width`` px
    across, which has no step for ``line_ratio`` to find)?  Each row's and column's mean less its
    average over +-2 ``width``: the largest such deviation within ``width`` px of the lines, in
    standard deviations of that deviation over the whole image, for the worst of the lines.  Up
    to about 3 where the lines are like any other; the band along a cut of the second 8192 px
    texture's relu4_1 level was 4.8 at 1024 px."""
    out = []
    for p, lines in zip(_line_profiles(image, strip), (rows, cols)):
        if not len(lines):
            continue
        n = len(p)
        dev = _off_local_mean(p, 2 * width)
        sd = max(dev.std(), 1e-12)
        for c in lines:
            out.append(np.abs(dev[np.arange(c - width, c + width + 1) % n]).max() / sd)
    return float(np.max(out)) if out else 0.0
