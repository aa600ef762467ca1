"""MobileNetV2 features for the optimisation: the trunk of Magenta's pretrained style predictor.

The same weights as ``magenta.StylePredictor`` (bundled, verified), run as a feature extractor:
``forward(x, layers)`` returns the ReLU6 outputs named in ``hires.core.layers`` (``mb0`` ... ``mb13``).
Two departures from the predictor, both for synthesis:

* Padding follows the frame (reflect for a photo, circular for a seamless texture, zeros inside a
  tile whose context covers the receptive radius), set with ``set_padding`` like VGG's.
* Every stride-2 step is anti-aliased (Zhang 2019, "Making convolutional networks shift-invariant
  again"): the 3x3 convolution followed by a 3x3 binomial blur ([1, 2, 1] squared / 16) sampled
  every second position.  TF's stride-2 convolutions sample the image on a fixed two-pixel
  lattice; optimised through them an image grows a two-pixel grid (the gradient reaches even and
  odd pixels through different taps).  The blur has a zero at the lattice's frequency, so each
  stride-2 step sees even and odd pixels alike; docs/networks.md measures the grid's spectral
  peak with and without it.  Both being linear, the step runs as one 5x5 convolution at stride 2
  (the 3x3 kernel convolved with the blur): the stride-1 convolution's full-size output is never
  made, and the step's forward and backward take 0.6x the time (the stem on a 784 px tile, 76 ms
  -> 48 ms).  Inside the frame it is the same function; on the frame's border (padded, as a whole,
  by two pixels of the input instead of one of the input and one of the convolution's output) it
  differs by a pixel row at stride 2, inside every tile's context margin.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from hires.engine import magenta
from hires.engine.borders import FrameConv2d
from hires.core.layers import LAYERS, MOBILE_DEEPEST


class MobileFeatures(nn.Module):
    """MobileNetV2 up to block 13's expansion, from the bundled predictor's weights."""

    def __init__(self, predictor: magenta.StylePredictor | None = None, antialias: bool = True):
        super().__init__()
        self.antialias = antialias  # False: TF's plain stride-2 sampling (for the measurement only)
        predictor = predictor or magenta.networks()[0]
        self.stem = _stride_one(predictor.stem)
        self.blocks = nn.ModuleList()
        for n in range(MOBILE_DEEPEST + 1):
            src = predictor.blocks[n]
            block = nn.ModuleDict()
            # copies: the predictor is shared (magenta.networks is cached), and an engine may move
            # its network to another dtype or device (the float64 gradient test does)
            if "expand" in src:
                block["expand"] = copy.deepcopy(src["expand"])
            if n < MOBILE_DEEPEST:
                block["depthwise"] = _stride_one(src["depthwise"])
                block["project"] = copy.deepcopy(src["project"])
            self.blocks.append(block)
        self.strides = [s for s in magenta.STRIDES[:MOBILE_DEEPEST]]
        # each stride-2 step (the stem's first) as one anti-aliased convolution
        self.steps = nn.ModuleList([_blurred(self.stem)] + [
            _blurred(self.blocks[n]["depthwise"]) for n, s in enumerate(self.strides) if s == 2])
        self.residual = set(magenta.RESIDUAL)
        self.mode = "reflect"
        self.set_padding("reflect")
        self.requires_grad_(False)
        self.to(memory_format=torch.channels_last)  # 1.7x faster forward and backward on CPU (measured)
        self.eval()

    def set_padding(self, mode: str) -> None:
        """'reflect' or 'zeros' for photos, 'circular' for seamless textures (as VGG's)."""
        self.mode = mode
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.padding != (0, 0):
                m.padding_mode = mode

    def _step(self, conv: nn.Conv2d, h: torch.Tensor, blurred: nn.Conv2d | None) -> torch.Tensor:
        """A 3x3 convolution of ``h``, at stride 2 when ``blurred`` (its anti-aliased form) is given,
        padded by the frame's rule."""
        if blurred is None:
            return conv(h)
        if not self.antialias:  # TF "SAME": nothing before, one after
            h = F.pad(h, (0, 1, 0, 1), mode="constant" if self.mode == "zeros" else self.mode)
            return F.conv2d(h, conv.weight, conv.bias, stride=2, groups=conv.groups)
        return blurred(h)  # an odd side n gives (n + 1) // 2 positions, as VGG's pooling does

    def forward(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        """``x``: (1, 3, H, W) RGB in [0, 1], H and W multiples of the deepest layer's stride."""
        wanted = {LAYERS[n].index - LAYERS["mb0"].index: n for n in layers}
        last = max(wanted)
        out = {}
        steps = iter(self.steps)
        h = F.relu6(self._step(self.stem, x.contiguous(memory_format=torch.channels_last), next(steps)))
        if 0 in wanted:
            out[wanted[0]] = h
        for n, block in enumerate(self.blocks):
            y = h
            if "expand" in block:
                y = F.relu6(block["expand"](h))
                if n in wanted:
                    out[wanted[n]] = y
            if n >= last:
                break
            blurred = next(steps) if self.strides[n] == 2 else None
            y = block["project"](F.relu6(self._step(block["depthwise"], y, blurred)))
            h = h + y if n in self.residual else y
        return out


def _stride_one(conv: nn.Conv2d) -> nn.Conv2d:
    """A copy of ``conv`` (3x3) at stride 1, padded by one on each side."""
    new = FrameConv2d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=1, padding=1,
                    groups=conv.groups, bias=conv.bias is not None)
    with torch.no_grad():
        new.weight.copy_(conv.weight)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


BLUR = torch.tensor([1.0, 2.0, 1.0]).outer(torch.tensor([1.0, 2.0, 1.0])) / 16


def _blurred(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` (3x3, stride 1) then the [1, 2, 1] x [1, 2, 1] / 16 blur of each of its output
    channels sampled every second position, as one 5x5 convolution at stride 2: its kernel is the
    3x3 kernel's full convolution with the blur (the blur sums to 1, so the bias is unchanged)."""
    new = FrameConv2d(conv.in_channels, conv.out_channels, 5, stride=2, padding=2, groups=conv.groups,
                    bias=conv.bias is not None)
    w = conv.weight.detach().double()
    k = torch.zeros(*w.shape[:2], 5, 5, dtype=torch.float64)
    for i in range(3):
        for j in range(3):
            k[:, :, i:i + 3, j:j + 3] += float(BLUR[i, j]) * w
    with torch.no_grad():
        new.weight.copy_(k)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new
