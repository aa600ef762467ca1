"""Loss terms.  Style: Gram of the whole image, with the tile's own part live (Galerne et al. 2024).

All Grams here are *sums* over positions (``sum_p F(p) F(p)^T``); dividing by the number of
positions N of the whole image gives the statistics of DESIGN.md.  Summing keeps tiles
additive: the global sum is the frozen rest plus the live tile.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class LayerTarget:
    """Style statistics of one layer: G = E[F F^T], mu = E[F] (per position)."""
    gram: torch.Tensor   # (C, C) float32
    mean: torch.Tensor   # (C,)
    gram_norm: float     # ||G||_F^2, the normaliser of the style loss
    energy: float        # trace(G) = E|F|^2, the scale used to normalise the content loss


def make_target(gram: np.ndarray, mean: np.ndarray) -> LayerTarget:
    g = torch.from_numpy(np.asarray(gram, np.float32))
    return LayerTarget(g, torch.from_numpy(np.asarray(mean, np.float32)),
                       float(np.sum(np.asarray(gram, np.float64) ** 2)) + 1e-12,
                       float(np.trace(gram)) + 1e-12)


def flat(feat: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (h*w, C); a view, no copy, for channels-last activations."""
    return feat[0].permute(1, 2, 0).reshape(-1, feat.shape[1])


def style_loss(tile_gram_sum, tile_sum, rest_gram_sum, rest_sum, count, target: LayerTarget,
               mean_weight: float = 0.0) -> torch.Tensor:
    """||G - G_style||^2 / ||G_style||^2 with G = (rest + tile) / N, plus an optional mean term."""
    g = (rest_gram_sum + tile_gram_sum) / count
    loss = ((g - target.gram) ** 2).sum() / target.gram_norm
    if mean_weight:
        mu = (rest_sum + tile_sum) / count
        loss = loss + mean_weight * ((mu - target.mean) ** 2).sum() / (target.mean.pow(2).sum() + 1e-8)
    return loss


def tv_loss(x: torch.Tensor, n_pixels: float) -> torch.Tensor:
    """Squared total variation of (1, 3, H, W), per pixel of the whole image."""
    dy = x[..., 1:, :] - x[..., :-1, :]
    dx = x[..., :, 1:] - x[..., :, :-1]
    return (dy.pow(2).sum() + dx.pow(2).sum()) / n_pixels


# ---------------------------------------------------------------- colour

def rgb_to_yuv_matrix() -> np.ndarray:
    return np.array([[0.299, 0.587, 0.114], [-0.14713, -0.28886, 0.436], [0.615, -0.51499, -0.10001]])


def preserve_luminance(result: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Luminance of ``result`` with the chroma of ``content`` (Gatys et al. 2016, colour preservation)."""
    m = rgb_to_yuv_matrix().astype(np.float32)
    yr = result @ m[0]
    yuv_c = content @ m.T
    yuv_c[..., 0] = yr
    return np.clip(yuv_c @ np.linalg.inv(m).T.astype(np.float32), 0.0, 1.0)


def colour_stats(image: np.ndarray, strip: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Colour mean and covariance of an (H, W, 3) image, accumulated in strips of rows."""
    n, total, outer = 0, np.zeros(3), np.zeros((3, 3))
    for y in range(0, image.shape[0], strip):
        px = image[y:y + strip].reshape(-1, 3).astype(np.float64)
        n += len(px)
        total += px.sum(0)
        outer += px.T @ px
    mu = total / n
    cov = (outer - n * np.outer(mu, mu)) / max(n - 1, 1)
    return mu, cov + 1e-5 * np.eye(3)


def histogram_transform(style_stats, content_stats):
    """The affine colour map that gives pixels with ``style_stats`` the content's colour mean and
    covariance (Gatys et al. 2017); returns a function applied to any (..., 3) block of pixels."""
    mu_c, cov_c = content_stats
    mu_s, cov_s = style_stats

    def sqrtm(c):
        w, v = np.linalg.eigh(c)
        return (v * np.sqrt(np.maximum(w, 1e-12))) @ v.T

    a = (sqrtm(cov_c) @ np.linalg.inv(sqrtm(cov_s))).astype(np.float32)
    mu_s, mu_c = mu_s.astype(np.float32), mu_c.astype(np.float32)
    return lambda px: np.clip((px - mu_s) @ a.T + mu_c, 0, 1).astype(np.float32)


def match_histogram(style: np.ndarray, content_stats) -> np.ndarray:
    """Recolour ``style`` so its colour mean and covariance equal the content's."""
    return histogram_transform(colour_stats(style), content_stats)(style)
