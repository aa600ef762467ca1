"""Whole-image feature statistics, accumulated tile by tile, and the style targets made from them.

A statistics pass (``Engine.stats_pass``) runs the network over an image's tiles and hands each
tile's activations here; ``Stats.add`` accumulates the weighted Gram sum, mean sum and position
count of the owned part with the float64 numba kernel.  Style targets are the same statistics of
the style images at a level's scale, mixed by weight, as tensors on the engine's device.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hires.core.errors import InputError
from hires.kernels import gram_accumulate, moments_accumulate
from hires.engine.regions import region_key
from hires.engine.tiles import owned_box


@dataclass
class Stats:
    """Whole-image statistics of one layer as sums: sum F F^T, sum F, and the position count."""
    gram: np.ndarray
    mean: np.ndarray
    count: float = 0.0

    @classmethod
    def empty(cls, channels: int) -> "Stats":
        return cls(np.zeros((channels, channels)), np.zeros(channels))

    def add(self, feat: torch.Tensor, wmap: np.ndarray) -> None:
        """Accumulate the positions of ``feat`` (1, C, h, w) with ownership ``wmap`` (h, w) > 0."""
        if not wmap.any():  # (a style region with no pixel in the tile)
            return
        ys, xs = owned_box(wmap)
        # (h, w, C), read in place by the kernel: a view for channels-last activations (a copy of
        # the box took a fifth of the time of a 64-channel tile's Gram)
        owned = feat[0, :, ys, xs].permute(1, 2, 0).cpu().numpy()
        if owned.strides[-1] != owned.itemsize:  # channels-first: each position's values together
            owned = np.ascontiguousarray(owned)
        self.count += gram_accumulate(owned, wmap[ys, xs], self.gram, self.mean)

    def merge(self, other: "Stats") -> "Stats":
        """Add another tile's sums (in a fixed order, so the total is the same wherever tiles ran)."""
        self.gram += other.gram
        self.mean += other.mean
        self.count += other.count
        return self

    def gram_mean(self) -> tuple[np.ndarray, np.ndarray]:
        return self.gram / self.count, self.mean / self.count


@dataclass
class Moments:
    """Whole-image per-channel sums for an instance norm: sum F**2, sum F, and the position count
    (the Gram's diagonal: C values per position where ``Stats`` takes C x C)."""
    sq: np.ndarray
    total: np.ndarray
    count: float = 0.0

    @classmethod
    def empty(cls, channels: int) -> "Moments":
        return cls(np.zeros(channels), np.zeros(channels))

    def add(self, feat: torch.Tensor, wmap: np.ndarray) -> None:
        """Accumulate the positions of ``feat`` (1, C, h, w) with ownership ``wmap`` (h, w) > 0."""
        ys, xs = owned_box(wmap)
        self.count += moments_accumulate(feat[0, :, ys, xs].cpu().numpy(), wmap[ys, xs], self.sq, self.total)

    def mean_var(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / self.count
        return mean, np.maximum(self.sq / self.count - mean ** 2, 0.0)


@dataclass
class LayerTarget:
    """Style statistics of one layer: G = E[F F^T], mu = E[F] (per position)."""
    gram: torch.Tensor   # (C, C)
    mean: torch.Tensor   # (C,)
    gram_norm: float     # ||G||_F^2, the normaliser of the style loss
    energy: float        # trace(G) = E|F|^2, the scale used to normalise the content loss
    mean_norm: float     # |mu|^2, the normaliser of the mean term


def make_target(gram: np.ndarray, mean: np.ndarray, device="cpu", dtype=torch.float32) -> LayerTarget:
    gram64, mean64 = np.asarray(gram, np.float64), np.asarray(mean, np.float64)
    return LayerTarget(torch.as_tensor(gram64, dtype=dtype, device=device),
                       torch.as_tensor(mean64, dtype=dtype, device=device),
                       float(np.sum(gram64 ** 2)) + 1e-12, float(np.trace(gram64)) + 1e-12,
                       float(np.sum(mean64 ** 2)) + 1e-8)


def style_targets(engine, images, layers, grid_of, groups=None) -> dict[str, LayerTarget]:
    """Per-layer style statistics of weighted style images, mixed by weight, on the engine's device.

    ``images`` yields (name, weight, image) with image float32 (h, w, 3); ``grid_of(image)`` gives
    the tiles of its statistics pass.  Images are consumed one at a time, so only one is held (their
    statistics are kept).  With ``groups`` (for each style region, its images' indices) the targets
    of region r are named ``regions.region_key(layer, r)``, beside the mix of all by layer name."""
    per_image: list[tuple[float, dict]] = []
    for name, weight, img in images:
        stats = engine.stats_pass(img, layers, grid_of(img))
        for layer, st in stats.items():
            if st.count <= 0:  # the planner refuses such images up front; this is the last guard
                raise InputError(f"style: {name!r} is too small ({img.shape[1]}x{img.shape[0]} px) for layer "
                                 f"{layer}; raise --style-scale or use a larger image")
        per_image.append((weight, {layer: st.gram_mean() for layer, st in stats.items()}))

    def mixed(indices) -> dict[str, LayerTarget]:
        total = sum(per_image[i][0] for i in indices)
        out = {}
        for layer in per_image[indices[0]][1]:
            g = sum(per_image[i][1][layer][0] * per_image[i][0] for i in indices)
            m = sum(per_image[i][1][layer][1] * per_image[i][0] for i in indices)
            out[layer] = make_target(g / total, m / total, engine.device, engine.dtype)
        return out

    targets = mixed(range(len(per_image)))
    for r, indices in enumerate(groups or ()):
        targets.update({region_key(layer, r): t for layer, t in mixed(list(indices)).items()})
    return targets
