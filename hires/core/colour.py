"""Colour options of a render: keep the photo's colours (luminance transfer) or recolour the
painting to the photo's palette (histogram transfer).  Everything works on (..., 3) blocks of
pixels, so callers apply it strip by strip to canvases of any size."""
from __future__ import annotations

import numpy as np
import scipy.linalg


def rgb_to_yuv_matrix() -> np.ndarray:
    return np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709 weights, as libvips's sRGB -> b-w


def to_gray(block: np.ndarray) -> np.ndarray:
    """(..., 3) RGB -> the same shape with every channel its luminance, in place."""
    block[...] = (block @ LUMA)[..., None]
    return block


def is_gray(image: np.ndarray, tol: float = 2 / 255) -> bool:
    """True when the channels of an (H, W, 3) image differ nowhere by more than ``tol``."""
    return bool(np.ptp(image, axis=-1).max() <= tol)


def preserve_luminance(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance of ``result`` with the chroma of ``content`` (Gatys et al. 2016, colour preservation)."""
    m = rgb_to_yuv_matrix().astype(np.float32)
    yuv_c = content @ m.T
    yuv_c[..., 0] = result @ m[0]
    return np.clip(yuv_c @ np.linalg.inv(m).T.astype(np.float32), 0.0, 1.0)


def colour_stats(image: np.ndarray, strip: int = 256, after_strip=None) -> tuple[np.ndarray, np.ndarray]:
    """Colour mean and covariance of an (H, W, 3) image, accumulated in strips of rows
    (``after_strip()`` is called after each: a disk-backed canvas drops its pages there)."""
    n, total, outer = 0, np.zeros(3), np.zeros((3, 3))
    for y in range(0, image.shape[0], strip):
        px = image[y:y + strip].reshape(-1, 3).astype(np.float64)
        n += len(px)
        total += px.sum(0)
        outer += px.T @ px
        if after_strip is not None:
            after_strip()
    mu = total / n
    cov = (outer - n * np.outer(mu, mu)) / max(n - 1, 1)
    return mu, cov + 1e-5 * np.eye(3)


def mix_stats(stats, weights) -> tuple[np.ndarray, np.ndarray]:
    """Colour mean and covariance of a mixture of images with these statistics, in proportions
    ``weights`` (the law of total covariance)."""
    w = np.asarray(weights, np.float64) / sum(weights)
    mu = sum(wi * m for wi, (m, _) in zip(w, stats))
    second = sum(wi * (c + np.outer(m, m)) for wi, (m, c) in zip(w, stats))
    return mu, second - np.outer(mu, mu)


def histogram_transform(style_stats, content_stats):
    """The affine colour map that gives pixels with ``style_stats`` the content's colour mean and
    covariance, A = C_c^1/2 C_s^-1/2 (Gatys et al. 2017); returns a function applied to any
    (..., 3) block of pixels."""
    mu_c, cov_c = content_stats
    mu_s, cov_s = style_stats
    # both covariances are symmetric positive definite (colour_stats adds a ridge), so their
    # principal square roots are real
    a = scipy.linalg.sqrtm(cov_c).real @ scipy.linalg.inv(scipy.linalg.sqrtm(cov_s).real)
    a = a.astype(np.float32)
    mu_s, mu_c = mu_s.astype(np.float32), mu_c.astype(np.float32)
    return lambda px: np.clip((px - mu_s) @ a.T + mu_c, 0, 1).astype(np.float32)


def match_histogram(style: np.ndarray, content_stats) -> np.ndarray:
    """Recolour ``style`` so its colour mean and covariance equal the content's."""
    return histogram_transform(colour_stats(style), content_stats)(style)
