"""The style code of a feed-forward render: the predictor's bottleneck of each style image, a fitted
style's own norm parameters (hires.fast.hstyle), or a built-in style's weights, mixed by weight and per
style region, and the network that takes it (``Stylist``, which hires.fast.fast's tiled transformer runs).
"""
from __future__ import annotations

import numpy as np
import torch

from hires.core import io
from hires.engine import magenta
from hires.fast import hstyle
from hires.core.config import builtin_mix
from hires.core.errors import OptionError
from hires.fast.fast import TiledTransformer, bytes_per_px, region_bytes_per_px, to_nchw
from hires.engine.regions import Masks


def bottleneck(image: np.ndarray, device="cpu") -> torch.Tensor:
    """The predictor's (1, 100) style bottleneck of a float32 (256, 256, 3) image."""
    predictor, _ = magenta.networks()
    with torch.no_grad():
        return predictor.to(device)(to_nchw(image, device))


def style_bottleneck(styles, content=None, strength: float = 1.0, recolour=None, device="cpu",
                     what: str = "style") -> torch.Tensor:
    """Bottlenecks of weighted style images (paths), mixed by weight; with ``strength`` < 1 moved
    toward the content's own bottleneck (Magenta's interpolation knob): strength 0 is the content's.
    ``recolour`` (optional) maps a (h, w, 3) image's colours before prediction."""
    total = sum(w for _, w in styles)
    mixed = 0.0
    for path, weight in styles:
        img = io.load_image(path, size=(magenta.STYLE_SIZE, magenta.STYLE_SIZE), what=what)
        mixed = mixed + bottleneck(recolour(img) if recolour else img, device) * (weight / total)
    if strength < 1.0:
        own = bottleneck(io.load_image(content, size=(magenta.STYLE_SIZE, magenta.STYLE_SIZE), what="content"),
                         device)
        mixed = strength * mixed + (1.0 - strength) * own
    return mixed


def style_norms(styles, content=None, strength: float = 1.0, recolour=None, device="cpu") -> list:
    """Each norm's (gamma, beta) of the arbitrary network for weighted styles: a style image's made
    from the predictor's bottleneck (``style_bottleneck``), a fitted style's (hires.fast.hstyle) its own,
    mixed by weight.  The norms' parameters are affine in the bottleneck, so mixing them is mixing the
    bottlenecks; with ``strength`` < 1 they move toward the content's own."""
    net = magenta.networks()[1]
    fitted = [(p, w) for p, w in styles if hstyle.is_hstyle(p)]
    if not fitted:  # the images' bottlenecks mixed, as the predictor's interpolation knob does
        with torch.no_grad():
            return net.style_params(style_bottleneck(styles, content, strength, recolour, device))
    if recolour is not None:
        raise OptionError("--preserve-color histogram recolours a painting before the network reads it, and a fitted "
                          "style (.hstyle) holds its painting's own colours: use --preserve-color luminance or none")
    images = [(p, w) for p, w in styles if not hstyle.is_hstyle(p)]
    parts = [(hstyle.load(p).torch_params(device), w) for p, w in fitted]
    with torch.no_grad():
        if images:
            parts.append((net.style_params(style_bottleneck(images, device=device)), sum(w for _, w in images)))
        total = sum(w for _, w in parts)
        mixed = [tuple(sum(p[k][i] * (w / total) for p, w in parts) for i in (0, 1)) for k in range(len(parts[0][0]))]
        if strength < 1.0:
            own = net.style_params(style_bottleneck([(content, 1.0)], device=device, what="content"))
            mixed = [tuple(strength * m + (1.0 - strength) * o for m, o in zip(pair, opair))
                     for pair, opair in zip(mixed, own)]
    return mixed


class Stylist:
    """The feed-forward network and style code of a render: the arbitrary network with the style
    images' bottleneck, or the 26-style network with a built-in style's weights."""

    def __init__(self, styles, content, settings, recolour=None, device="cpu", masks: Masks = Masks()):
        self.builtin = settings.builtin_style is not None
        self.device = device
        self.masks, self.n_styles = masks, len(styles)
        if self.builtin:
            if settings.strength < 1.0:
                raise OptionError("--strength: the built-in styles have no style code of the photo to move "
                                  "toward; leave --strength at 1 with --builtin-style")
            self.network = magenta.multistyle()
            self.code = magenta.builtin_weights(builtin_mix(settings.builtin_style))
            self.name = f"magenta 26-style network, style {settings.builtin_style}"
        else:
            self.network = magenta.networks()[1]
            # with style regions one code per region, mixed per pixel in the norms (RegionParams)
            groups = [[styles[i] for i in r.styles] for r in masks.regions(len(styles))] if masks else [styles]
            self.code = [style_norms(g, content, settings.strength, recolour, device) for g in groups]
            self.name = "magenta (the bundled feed-forward network)"

    @property
    def bytes_per_px(self) -> int:
        return bytes_per_px(self.builtin) + region_bytes_per_px(self.masks)

    def runner(self) -> "TiledTransformer":
        regions = (self.masks, self.n_styles) if self.masks else None
        return TiledTransformer(self.code, self.device, self.network, regions)
