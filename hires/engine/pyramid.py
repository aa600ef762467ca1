"""The coarse-to-fine schedule: level sizes, iterations and network depth per level."""
from __future__ import annotations

import math
from dataclasses import dataclass

from hires.core.config import Settings
from hires.core.layers import LAYERS, banded, keep_rank


def _depth(name: str) -> int:
    return LAYERS[name].index


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
        return max((*self.style_layers, self.content_layer), key=_depth)

    @property
    def coarsest(self) -> str:
        """The level's layer of the largest stride (its smallest map)."""
        return max(self.layers, key=lambda n: (LAYERS[n].stride, _depth(n)))

    @property
    def stride(self) -> int:
        """The largest stride among the level's layers: its sizes and tile origins align to it."""
        return LAYERS[self.coarsest].stride

    @property
    def radius(self) -> int:
        """How far (px) the level's deepest-seeing layer sees: the tiles' context margin."""
        return max(LAYERS[n].radius for n in self.layers)

    @property
    def layers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.style_layers, self.content_layer)))

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def banded(self) -> str | None:
        """The style layer made as its Gram alone, band by band (hires.core.layers.banded), or None."""
        return banded(self.style_layers, self.content_layer)


def schedule(width: int, height: int, settings: Settings, network: str | None = None) -> list[Level]:
    """Levels by factor 2 from the whole-frame base level (long side <= base_size) to the target, with
    ``network``'s layers (default: the one ``settings.network`` resolves to)."""
    long_side = max(width, height)
    n_up = max(0, math.ceil(math.log2(long_side / settings.base_size))) if long_side > settings.base_size else 0
    if network is None:
        from hires.engine.nets import resolve_network
        network = resolve_network(settings.network, settings.weights)
    style_layers, content_layer = settings.layers_for(network)
    layers = sorted(style_layers, key=lambda n: keep_rank(n, network))
    levels = []
    fast_long = min(settings.fast_size, long_side) if settings.fast_size else long_side
    for k in range(n_up + 1):
        f = 2.0 ** (k - n_up)
        w, h = max(1, round(width * f)), max(1, round(height * f))
        # Finer levels only add detail on top of the structure the coarse levels settled, and at
        # high resolution a deep layer's receptive field covers a small part of the picture, so
        # each finer level drops the deepest style layer: shallower network, less compute per px.
        keep = max(min(settings.min_style_layers, len(layers)), len(layers) - k)
        style = tuple(sorted(layers[:keep], key=_depth))
        deepest = max(_depth(n) for n in style)
        content = content_layer
        if _depth(content) > deepest:
            content = max(style, key=_depth)
        # with a fast start, every level up to the network's working size is its stylisation, resampled:
        # optimising those levels with a weight-free network washes the painted look out
        # (docs/images/compare_chelsea_starry.jpg); the finer levels refine on top of it
        covered = settings.init == "fast" and max(w, h) <= fast_long
        levels.append(Level(k, w, h, 0 if covered else settings.level_iterations(k), style, content, covered))
    return levels
