"""Magenta's arbitrary image stylisation network as plain torch modules (no runtime dependency).

Ghiasi et al. 2017, "Exploring the structure of a real-time, arbitrary neural artistic
stylization network", distilled TF-Lite version, Apache-2.0 (hires/models/LICENSE-magenta.txt).
A MobileNetV2 style predictor turns a style image (256x256) into a 100-d bottleneck; a small
fully convolutional transformer with conditional instance norm (CIN) renders a content image in
that style.  Weights come from ``hires/models/magenta.npz`` (made by ``hires.fast.magenta_convert``),
verified by SHA-256 before loading.  The layer structure follows the TF graph exactly; see the
conversion's reference test (tests/test_magenta.py).
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hires.core import config
from hires.engine.borders import FrameConv2d
from hires.core.errors import WeightsError

MODELS = Path(__file__).parents[1] / "models"
WEIGHTS = MODELS / "magenta.npz"
STYLE_SIZE = 256           # the predictor's input side
CIN_EPS = 1e-5             # from the graph: 127 x 7.874e-8
BOTTLENECK = 100
# MobileNetV2 (width 1.0): stride of each expanded_conv_N's depthwise conv, N = 0..16
STRIDES = [1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1]
RESIDUAL = [2, 4, 5, 7, 8, 9, 11, 12, 14, 15]
RESIDUAL_BLOCKS = 5


@lru_cache(maxsize=1)
def load_arrays(path: Path = WEIGHTS) -> dict[str, np.ndarray]:
    """The converted weights, after checking the file's SHA-256 against the one shipped beside it."""
    path = Path(path)
    try:
        want = path.with_suffix(".sha256").read_text().split()[0]
        data = path.read_bytes()
    except OSError as e:
        raise WeightsError(f"fast method: the bundled weights {str(path)!r} cannot be read ({e.strerror or e}); "
                           "reinstall hires") from None
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise WeightsError(f"fast method: {str(path)!r} fails verification (SHA-256 {got[:12]}..., expected "
                           f"{want[:12]}...); reinstall hires")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _reflected(w: torch.Tensor) -> dict:
    """Padding by reflection, half the kernel ``w``'s side: the feed-forward networks' rule."""
    return {"padding": w.shape[-1] // 2, "padding_mode": "reflect"}


def _conv(arrays, key: str, reflect: bool = False, **kw) -> nn.Conv2d:
    """The convolution ``key`` of the arrays; ``reflect``: padded by reflection, half its kernel."""
    w, b = torch.from_numpy(arrays[f"{key}.weight"]), torch.from_numpy(arrays[f"{key}.bias"])
    conv = FrameConv2d(w.shape[1] * kw.get("groups", 1), w.shape[0], w.shape[2:], bias=True,
                       **(_reflected(w) if reflect else {}), **kw)
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(b)
    return conv


class StylePredictor(nn.Module):
    """Style image (1, 3, 256, 256) in [0, 1] -> bottleneck (1, 100).

    TF "SAME" padding: symmetric for stride 1, (0 before, 1 after) for stride 2 on even sizes."""

    def __init__(self, arrays):
        super().__init__()
        p = "MobilenetV2"
        self.stem = _conv(arrays, f"{p}/Conv", stride=2)
        self.blocks = nn.ModuleList()
        for i, stride in enumerate(STRIDES):
            name = f"{p}/expanded_conv" + (f"_{i}" if i else "")
            block = nn.ModuleDict()
            if f"{name}/expand.weight" in arrays:
                block["expand"] = _conv(arrays, f"{name}/expand")
            channels = arrays[f"{name}/depthwise.weight"].shape[0]
            block["depthwise"] = _conv(arrays, f"{name}/depthwise", stride=stride, groups=channels,
                                       padding=1 if stride == 1 else 0)
            block["project"] = _conv(arrays, f"{name}/project")
            self.blocks.append(block)
        self.head = _conv(arrays, f"{p}/Conv_1")
        self.bottleneck = _conv(arrays, "mobilenet_conv/Conv")
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu6(self.stem(F.pad(x, (0, 1, 0, 1))))
        for i, block in enumerate(self.blocks):
            y = F.relu6(block["expand"](h)) if "expand" in block else h
            dw = block["depthwise"]
            y = F.relu6(dw(F.pad(y, (0, 1, 0, 1)) if dw.stride[0] == 2 else y))
            y = block["project"](y)
            h = h + y if i in RESIDUAL else y
        h = F.relu6(self.head(h)).mean(dim=(2, 3), keepdim=True)
        return self.bottleneck(h).flatten(1)


class CIN(nn.Module):
    """Conditional instance norm: (x - mean) / sqrt(var + eps) * gamma + beta, with gamma and beta
    1x1 convolutions of the style bottleneck and population statistics over the whole image
    (given as ``stats`` when the image is processed in tiles)."""

    def __init__(self, arrays, key: str):
        super().__init__()
        self.gamma = _conv(arrays, f"style_params/{key}/StyleNorm/Conv_1")
        self.beta = _conv(arrays, f"style_params/{key}/StyleNorm/Conv")

    def params(self, bottleneck: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = bottleneck[:, :, None, None]
        return self.gamma(b), self.beta(b)

    def forward(self, x, params, stats=None):
        return instance_norm(x, params, stats)


class MixedParams(NamedTuple):
    """A norm's (gamma, beta) mixed per position from several styles': ``gammas`` and ``betas``
    (C, styles), ``weights`` (styles, h x w) each position's weight of each (hires.fast.fast.RegionParams)."""
    gammas: torch.Tensor
    betas: torch.Tensor
    weights: torch.Tensor


def instance_norm(x, params, stats=None):
    """(x - mean) / sqrt(var + eps) * gamma + beta; ``stats`` = (mean, var) over the whole image
    replaces the statistics of ``x`` when ``x`` is one tile of it.  ``params``: (gamma, beta), or
    MixedParams, whose scale and shift are mixed per position (one product each, from the styles'
    per-channel scale and shift: no full-size gamma is made)."""
    if stats is None:
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True)
    else:
        mean, var = stats
    if isinstance(params, MixedParams):
        inv = torch.rsqrt(var + CIN_EPS).reshape(-1, 1)
        scales = params.gammas * inv
        shifts = params.betas - mean.reshape(-1, 1) * scales
        # the scale map, times x, plus the shift map added by the product itself (beta = 1): one
        # full-size tensor made, as the plain norm's, and three passes over it, in x's own layout
        # (the scale and shift maps made apart, then addcmul, and x copied out of its channels-last
        # layout, took a 3000 px start 1.7x the plain one's time)
        n, c, h, w = x.shape
        if x.is_contiguous(memory_format=torch.channels_last):  # (positions, channels) products
            out = params.weights.T @ scales.T
            out.mul_(x.permute(0, 2, 3, 1).reshape(h * w, c)).addmm_(params.weights.T, shifts.T)
            return out.reshape(n, h, w, c).permute(0, 3, 1, 2)
        out = scales @ params.weights
        out.mul_(x.reshape(c, h * w)).addmm_(shifts, params.weights)
        return out.reshape(n, c, h, w)
    gamma, beta = params
    scale = gamma * torch.rsqrt(var + CIN_EPS)
    return torch.addcmul(beta - mean * scale, x, scale)  # one pass, no temporary (2.3x at 64 channels)


class CINNetwork(nn.Module):
    """A feed-forward network whose instance norms take their (gamma, beta) from a style code and
    can take their statistics from outside (hires.fast.fast runs it tile by tile).

    The network is a chain of steps between its norm layers, so a tiled run can stop a tile at a
    norm, keep its state and resume it once the layer's whole-image statistics are known.  A
    state is ``(skip, pre)``: ``pre`` the input of the next norm, ``skip`` what a residual block
    adds back (or None).  Subclasses give ``norms()``, ``style_params(code)``, ``begin(x)`` (the
    state before norm 0), ``next_conv(k)`` (the convolution after norm k), ``first_block`` and
    ``blocks`` (the layout ``after_norm`` steps through), ``norm_strides`` (input px per position of
    each norm's map) and ``receptive_radius`` (how far an output pixel sees)."""

    norm_strides: list[int]
    receptive_radius: int

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None, params=None, stats=None) -> torch.Tensor:
        """The stylised image of ``x``.  ``stats[k]`` = (mean, var) of norm layer k over the whole
        image replaces the input's own statistics (hires.fast.fast gathers them tile by tile)."""
        params = params if params is not None else self.style_params(code)
        stats = stats if stats is not None else [None] * len(params)
        return self.resume(self.begin(x), 0, len(params), params, stats)

    first_block: int    # the norm index of the first residual block's first conv
    blocks: int         # residual blocks; then two upsampling convs and the output conv, each normed

    def next_conv(self, k: int) -> nn.Conv2d:
        """The convolution that follows norm ``k``."""
        raise NotImplementedError

    def after_norm(self, k: int, state, norm):
        """The state before norm k + 1 from the state before norm k (``norm`` applies it), or the
        output image after the last norm: contract convs (ReLU), residual blocks, two nearest x2
        upsamplings (conv, norm, ReLU), the output conv (norm, sigmoid); reflect padding throughout."""
        h, pre = state
        first, last = self.first_block, self.first_block + 2 * self.blocks
        if k < first - 1:  # a contract conv next
            return None, self.next_conv(k)(F.relu_(norm(pre)))
        if k == first - 1:  # the contract's end: the first block's input
            h = F.relu_(norm(pre))
            return h, self.next_conv(k)(h)
        if k < last and (k - first) % 2 == 0:  # inside a block
            return h, self.next_conv(k)(F.relu_(norm(pre)))
        if k < last - 1:  # the end of a block: the next block's first conv
            h = h + norm(pre)
            return h, self.next_conv(k)(h)
        if k == last - 1:
            h = F.interpolate(h + norm(pre), scale_factor=2, mode="nearest")
            return None, self.next_conv(k)(h)
        if k == last:
            h = F.interpolate(F.relu_(norm(pre)), scale_factor=2, mode="nearest")
            return None, self.next_conv(k)(h)
        if k == last + 1:
            return None, self.next_conv(k)(F.relu_(norm(pre)))
        return torch.sigmoid(norm(pre))

    def resume(self, state, start: int, stop: int, params, stats):
        """Run ``state`` (the state before norm ``start``) through norms start..stop-1."""
        norms = self.norms()
        for k in range(start, stop):
            state = self.after_norm(k, state, lambda h, k=k: norms[k](h, params[k], stats[k]))
        return state


class Transformer(CINNetwork):
    """Content (1, 3, H, W) in [0, 1], H and W multiples of 4, and a bottleneck -> stylised image.

    contract: reflect-pad 4 + 9x9 conv 3->8 + ReLU, then two reflect-pad 1 + 3x3 stride-2 convs
    (batch norm folded in) + ReLU; five residual blocks x + CIN(conv(pad(ReLU(CIN(conv(pad(x))))));
    expand: two (nearest x2, pad, conv, CIN, ReLU), then pad 4, 9x9 conv 8->3, CIN, sigmoid."""

    def __init__(self, arrays):
        super().__init__()
        t = "transformer"
        self.contract = nn.ModuleList([_conv(arrays, f"{t}/contract/conv1", reflect=True),
                                       _conv(arrays, f"{t}/contract/conv2", reflect=True, stride=2),
                                       _conv(arrays, f"{t}/contract/conv3", reflect=True, stride=2)])
        self.res_convs = nn.ModuleList()
        self.res_norms = nn.ModuleList()
        for r in range(1, RESIDUAL_BLOCKS + 1):
            for c in (1, 2):
                key = f"{t}/residual/residual{r}/conv{c}"
                self.res_convs.append(_conv(arrays, key, reflect=True))
                self.res_norms.append(CIN(arrays, key))
        self.expand_convs = nn.ModuleList([_conv(arrays, f"{t}/expand/conv{c}/conv", reflect=True)
                                           for c in (1, 2, 3)])
        self.expand_norms = nn.ModuleList([CIN(arrays, f"{t}/expand/conv{c}/conv") for c in (1, 2, 3)])
        self.requires_grad_(False)
        self.to(memory_format=torch.channels_last)  # 1.2-1.3x faster convolutions on CPU (1536 px, measured)
        self.eval()

    def norms(self) -> list[CIN]:
        return [*self.res_norms, *self.expand_norms]

    def style_params(self, bottleneck: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(gamma, beta) of every CIN layer, in order, for a (1, 100) bottleneck."""
        return [n.params(bottleneck) for n in self.norms()]

    def begin(self, x):
        h = x.contiguous(memory_format=torch.channels_last)
        for conv in self.contract:
            h = F.relu_(conv(h))
        return h, self.res_convs[0](h)

    def next_conv(self, k: int) -> nn.Conv2d:
        """Norms 0..9 are the residual blocks' two convs, 10..12 the expand convs."""
        return self.res_convs[k + 1] if k + 1 < len(self.res_convs) else self.expand_convs[k + 1 - len(self.res_convs)]


# the scale (input px per position) of each CIN layer's map: ten residual convs at 1/4, then 1/2, 1, 1
NORM_STRIDES = [4] * (2 * RESIDUAL_BLOCKS) + [2, 1, 1]
# how far an output pixel sees: 4 + 1 + 2 (contract), 10 x 4 (residual), 2 + 1 + 4 (expand)
RECEPTIVE_RADIUS = 54
Transformer.norm_strides, Transformer.receptive_radius = NORM_STRIDES, RECEPTIVE_RADIUS
Transformer.first_block, Transformer.blocks = 0, RESIDUAL_BLOCKS

# ---------------------------------------------------------------- the 26-style network

N_BUILTIN = config.N_BUILTIN
MULTI_RESIDUAL_BLOCKS = 6


class TableCIN(nn.Module):
    """Conditional instance norm with a (gamma, beta) row per built-in style: a style code is a
    (1, 26) weight vector and the parameters are its weighted sum of rows (Dumoulin et al.)."""

    def __init__(self, arrays, key: str):
        super().__init__()
        self.register_buffer("gamma", torch.from_numpy(arrays[f"{key}.norm.gamma"]))
        self.register_buffer("beta", torch.from_numpy(arrays[f"{key}.norm.beta"]))

    def params(self, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (weights @ self.gamma)[:, :, None, None], (weights @ self.beta)[:, :, None, None]

    def forward(self, x, params, stats=None):
        return instance_norm(x, params, stats)


def _plain_conv(arrays, key: str, stride: int = 1) -> nn.Conv2d:
    """The convolution ``key`` (no bias), padded by reflection, half its kernel."""
    w = torch.from_numpy(arrays[f"{key}.w"])
    conv = FrameConv2d(w.shape[1], w.shape[0], w.shape[2:], stride=stride, bias=False, **_reflected(w))
    with torch.no_grad():
        conv.weight.copy_(w)
    return conv


class MultiStyleTransformer(CINNetwork):
    """The 26-style network (Dumoulin et al. 2017, "A learned representation for artistic style";
    the TensorFlow Android stylize demo's model): content (1, 3, H, W) in [0, 1], H and W multiples
    of 4, and a (1, 26) style weight vector -> stylised image.  Every convolution (reflect padded,
    no bias) is followed by a conditional instance norm: contract 9x9 3->32, 3x3/2 32->32, 3x3/2
    32->32 (+ ReLU); six residual blocks at 32 channels; expand: two (nearest x2, 3x3 conv, norm,
    ReLU) 32->8->4, then 9x9 4->3, norm, sigmoid."""

    norm_strides = [1, 2, 4] + [4] * (2 * MULTI_RESIDUAL_BLOCKS) + [2, 1, 1]
    receptive_radius = 4 + 1 + 2 + 2 * MULTI_RESIDUAL_BLOCKS * 4 + 2 + 1 + 4   # 62
    first_block, blocks = 3, MULTI_RESIDUAL_BLOCKS

    def __init__(self, arrays):
        super().__init__()
        m = "multistyle26"
        keys = [f"{m}/contract.{i}" for i in range(3)]
        keys += [f"{m}/res.{r}.{c}" for r in range(MULTI_RESIDUAL_BLOCKS) for c in (0, 1)]
        keys += [f"{m}/expand.{i}" for i in range(3)]
        strides = [1, 2, 2] + [1] * (len(keys) - 3)
        self.convs = nn.ModuleList([_plain_conv(arrays, k, s) for k, s in zip(keys, strides)])
        self.cins = nn.ModuleList([TableCIN(arrays, k) for k in keys])
        self.requires_grad_(False)
        self.to(memory_format=torch.channels_last)  # as Transformer's
        self.eval()

    def norms(self) -> list[TableCIN]:
        return list(self.cins)

    def style_params(self, weights: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [n.params(weights) for n in self.cins]

    def begin(self, x):
        return None, self.convs[0](x.contiguous(memory_format=torch.channels_last))

    def next_conv(self, k: int) -> nn.Conv2d:
        """Norms 0..2 are the contract convs, 3..14 the residual blocks' two convs, 15..17 expand."""
        return self.convs[k + 1]


def builtin_weights(mix: dict[int, float]) -> torch.Tensor:
    """The (1, 26) style code of built-in styles ``{index: weight}``, weights summing to one."""
    total = sum(mix.values())
    v = torch.zeros(1, N_BUILTIN)
    for k, w in mix.items():
        v[0, k] = w / total
    return v


@lru_cache(maxsize=1)
def networks() -> tuple[StylePredictor, Transformer]:
    arrays = load_arrays()
    return StylePredictor(arrays), Transformer(arrays)


@lru_cache(maxsize=1)
def multistyle() -> MultiStyleTransformer:
    return MultiStyleTransformer(load_arrays())
