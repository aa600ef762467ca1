"""Detail for a texture's finer levels: the octave an upsampled start cannot carry, as noise.

Each finer level starts from the coarser result resampled to twice the size, which holds nothing
of the new octave of detail.  A few evaluations of the fine layers' Gram loss cannot raise that
detail from a smooth start (their gradients are small where the image is flat): the first 8192 px
texture came out with a fifth of its example's pixel-to-pixel contrast.  Shaping noise is what
the loss does well, so the start gets the missing octave as noise: coloured like the example's
own top octave (its 3x3 covariance, so moss speckle is green-brown, not rainbow), at the power the
example has there at this level's scale.
"""
from __future__ import annotations

import numpy as np

from hires.core import io
from hires.core.canvas import release
from hires.core.colour import mix_stats

STRIP = 256


def top_octave(image: np.ndarray) -> np.ndarray:
    """The detail of an (H, W, 3) image that halving and resampling back (as a level is made from
    the coarser one) loses."""
    h, w = image.shape[:2]
    return image - io.resize(io.resize(image, max(1, w // 2), max(1, h // 2)), w, h)


def octave_covariance(examples, weights) -> np.ndarray:
    """3x3 colour covariance of the examples' top octaves, mixed by weight."""
    stats = []
    for ex in examples:
        px = top_octave(ex).reshape(-1, 3).astype(np.float64)
        stats.append((px.mean(0), np.cov(px, rowvar=False)))
    return mix_stats(stats, weights)[1]


def add_noise(canvas: np.ndarray, cov: np.ndarray, amount: float, seed: int, level: int) -> None:
    """Add Gaussian noise of colour covariance ``amount**2 * cov`` to ``canvas`` in place, strip by
    strip, clipped to [0, 1].  The noise depends only on (seed, level), so a render resumed at
    this level adds the same noise as an uninterrupted one."""
    if amount <= 0:
        return
    vals, vecs = np.linalg.eigh(cov)
    colour = (vecs * np.sqrt(np.clip(vals, 0, None))).T.astype(np.float32) * np.float32(amount)
    rng = np.random.default_rng((seed, level, 0x5EED))
    h, w = canvas.shape[:2]
    for y in range(0, h, STRIP):
        block = canvas[y:y + STRIP]
        noise = rng.standard_normal((block.shape[0], w, 3), np.float32) @ colour
        np.clip(block + noise, 0.0, 1.0, out=block)
        release(canvas)
