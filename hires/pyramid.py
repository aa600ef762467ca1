"""The coarse-to-fine schedule: level sizes, iterations and network depth per level."""
from __future__ import annotations

import math
from dataclasses import dataclass

from hires.config import Settings
from hires.nets import LAYER_INDEX


@dataclass(frozen=True)
class Level:
    index: int
    width: int
    height: int
    iterations: int
    style_layers: tuple[str, ...]
    content_layer: str
    fast: bool = False   # taken as it is from the feed-forward network's stylisation, not optimised

    @property
    def deepest(self) -> str:
        return max((*self.style_layers, self.content_layer), key=LAYER_INDEX.__getitem__)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))

    @property
    def pixels(self) -> int:
        return self.width * self.height


def schedule(width: int, height: int, settings: Settings) -> list[Level]:
    """Levels by factor 2 from the whole-frame base level (long side <= base_size) to the target."""
    long_side = max(width, height)
    n_up = max(0, math.ceil(math.log2(long_side / settings.base_size))) if long_side > settings.base_size else 0
    layers = sorted(settings.style_layers, key=LAYER_INDEX.__getitem__)
    levels = []
    fast_long = min(settings.fast_size, long_side) if settings.fast_size else long_side
    for k in range(n_up + 1):
        f = 2.0 ** (k - n_up)
        w, h = max(1, round(width * f)), max(1, round(height * f))
        # Finer levels only add detail on top of the structure the coarse levels settled, and at
        # high resolution a deep layer's receptive field covers a small part of the picture, so
        # each finer level drops the deepest style layer: shallower network, less compute per px.
        keep = max(min(settings.min_style_layers, len(layers)), len(layers) - k)
        style = tuple(layers[:keep])
        deepest = max(LAYER_INDEX[n] for n in style)
        content = settings.content_layer
        if LAYER_INDEX[content] > deepest:
            content = max(style, key=LAYER_INDEX.__getitem__)
        # with a fast start, every level up to the network's working size is its stylisation, resampled:
        # optimising those levels with a weight-free network washes the painted look out
        # (benchmarks/results/gallery/compare_*.jpg); the finer levels refine on top of it
        covered = settings.init in ("auto", "fast") and max(w, h) <= fast_long
        levels.append(Level(k, w, h, 0 if covered else settings.level_iterations(k), style, content, covered))
    return levels
