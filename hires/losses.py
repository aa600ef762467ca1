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
    """(1, C, h, w) -> (h*w, C); a view, no copy, for channels-last activations.  (Not
    ``feat[0]``: indexing's backward allocates a zeroed copy of the whole activation.)"""
    return feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1])


class _WeightedGram(torch.autograd.Function):
    """sum_p w_p f_p f_p^T of f (N, C), with ``sqrt_w`` (N, 1) = sqrt(w).

    As (sqrt(w) f)^T (sqrt(w) f) the backward is one matmul with the symmetrised incoming
    gradient, instead of autograd's two matmuls, an add and the weight multiply's own backward."""

    @staticmethod
    def forward(ctx, f, sqrt_w):
        fs = f * sqrt_w
        ctx.save_for_backward(fs, sqrt_w)
        return fs.T @ fs

    @staticmethod
    def backward(ctx, grad):
        fs, sqrt_w = ctx.saved_tensors
        return (fs @ (grad + grad.T)).mul_(sqrt_w), None


class _WeightedSquaredError(torch.autograd.Function):
    """sum_p w_p |f_p - t_p|^2 with ``sqrt_w`` (N, 1), keeping one residual for the backward."""

    @staticmethod
    def forward(ctx, f, target, sqrt_w):
        d = (f - target).mul_(sqrt_w)
        ctx.save_for_backward(d, sqrt_w)
        d = d.reshape(-1)
        return torch.dot(d, d)

    @staticmethod
    def backward(ctx, grad):
        d, sqrt_w = ctx.saved_tensors
        return d.mul(sqrt_w).mul_(2 * grad), None, None


def weighted_gram(f: torch.Tensor, sqrt_w: torch.Tensor) -> torch.Tensor:
    """sum_p w_p f_p f_p^T for f (N, C) and sqrt_w = sqrt(w) of shape (N, 1)."""
    return _WeightedGram.apply(f, sqrt_w)


def weighted_squared_error(f: torch.Tensor, target: torch.Tensor, sqrt_w: torch.Tensor) -> torch.Tensor:
    """sum_p w_p |f_p - target_p|^2 for (N, C) tensors and sqrt_w = sqrt(w) of shape (N, 1)."""
    return _WeightedSquaredError.apply(f, target, sqrt_w)


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
