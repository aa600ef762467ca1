"""The weighted Gram of a network's first layer (a 3x3 convolution and a ReLU), made band by band.

At a print's fine levels the hybrid's ``relu1_1`` has 64 channels at every pixel: an 880 px tile's
activation is 198 MB, and only its Gram is wanted.  Made whole, the activation and the gradients
through it cross memory about eight times an evaluation (the convolution, the ReLU, the Gram, the
Gram's backward, the ReLU's backward, the convolution's backward), each a fresh layer-sized tensor:
370 ms an evaluation on an 880 px tile (AVX2), over twice the rest of the network.  Here a band of
rows is convolved, rectified and added into the Gram while it is in cache; the backward makes the
band again (its convolution is a third of the Gram's arithmetic) and takes its gradient back to the
input there, as a matrix product to the 27 taps and nine shifted sums (oneDNN's backward of a
convolution to three channels runs at a third of that rate).  Nothing layer-sized is made or kept.

The input comes padded by one pixel on each side by the frame's rule (``pad``), so the bands are
convolved without padding and the function is the whole layer's, to rounding.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from hires.engine.losses import flat

BAND_POSITIONS = 14_000  # positions a band holds: 3.6 MB of activation, a band's work stays in L2 and L3


def band_rows(start: int, stop: int, width: int) -> list[tuple[int, int]]:
    """Rows ``start`` to ``stop`` of a map ``width`` positions wide, in bands of about
    BAND_POSITIONS positions."""
    step = max(1, round(BAND_POSITIONS / width))
    return [(r, min(r + step, stop)) for r in range(start, stop, step)]


class Bands(NamedTuple):
    """The rows of a (H, W) map in bands, with the weights of each band's positions for each of one
    or more weight sets (a tile's ownership, or its style regions'): ``weights[i]`` lists, for the
    sets with a nonzero weight in band i, (set, its weights (rows x W, 1), or None where every one is
    one).  Bands where every set's weights are zero (a tile's context) are left out: they add nothing,
    and their gradient is zero.  ``stacked``: made from a list of sets, whose sums come back stacked
    (sets, K, K); from one set, (K, K)."""
    rows: list[tuple[int, int]]
    weights: list[list[tuple[int, torch.Tensor | None]]]
    mean: bool  # whether the weighted sum of the activations is wanted too (a mean loss term)
    sets: int = 1
    stacked: bool = False

    @classmethod
    def of(cls, weights, height: int, width: int, mean: bool = False) -> "Bands":
        """From the weights of the map's positions in row-major order, (H x W, 1) or (H x W,), or a
        list of such weight sets."""
        stacked = isinstance(weights, (list, tuple))
        sets = [w.reshape(height * width, 1) for w in (weights if stacked else [weights])]
        rows, parts = [], []
        for r0, r1 in band_rows(0, height, width):
            entries = []
            for k, w in enumerate(sets):
                part = w[r0 * width:r1 * width]
                if bool((part != 0).any()):
                    entries.append((k, None if bool((part == 1).all()) else part))
            if entries:
                rows.append((r0, r1))
                parts.append(entries)
        return cls(rows, parts, mean, len(sets), stacked)


def pad(x: torch.Tensor, mode: str) -> torch.Tensor:
    """``x`` padded by one pixel on each side the way a convolution's ``padding_mode`` does."""
    return F.pad(x, (1, 1, 1, 1), mode="constant" if mode == "zeros" else mode)


def conv_relu_gram(xp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   bands: Bands) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum_p w_p f_p f_p^T, sum_p w_p f_p) of f = relu(conv3x3(xp, weight, bias)) without padding,
    for ``xp`` (1, C, H + 2, W + 2) and the weights in ``bands`` (stacked, one per weight set, when
    ``bands.stacked``); the second is zeros unless ``bands.mean``.  Differentiable with respect to
    ``xp`` (the weights are frozen)."""
    gram, mean = _ConvReluGram.apply(xp.contiguous(memory_format=torch.channels_last), weight, bias, bands)
    return (gram, mean) if bands.stacked else (gram[0], mean[0])


def conv_relu_bands(xp: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, rows):
    """relu(conv3x3(xp, weight, bias)) without padding, a band of ``rows`` (r0, r1) at a time:
    (r0, r1, the band's activation (1, K, r1 - r0, W), channels-last)."""
    xp = xp.contiguous(memory_format=torch.channels_last)
    for r0, r1 in rows:
        yield r0, r1, torch.relu_(F.conv2d(xp[..., r0:r1 + 2, :], weight, bias))


class _ConvReluGram(torch.autograd.Function):

    @staticmethod
    def forward(ctx, xp, weight, bias, bands: Bands):
        ctx.save_for_backward(xp, weight, bias)
        ctx.bands = bands
        k = weight.shape[0]
        gram = xp.new_zeros(bands.sets, k, k)
        mean = xp.new_zeros(bands.sets, k)
        for (_, _, a), entries in zip(conv_relu_bands(xp, weight, bias, bands.rows), bands.weights):
            f = flat(a)
            for i, w in entries:
                gram[i].addmm_((f if w is None else f * w).T, f)
                if bands.mean:
                    mean[i] += f.sum(0) if w is None else (w.T @ f)[0]
        return gram, mean

    @staticmethod
    def backward(ctx, grad_gram, grad_mean):
        xp, weight, bias = ctx.saved_tensors
        bands = ctx.bands
        k, c = weight.shape[:2]
        s = grad_gram + grad_gram.transpose(-1, -2)
        # the weight as (K, 3 x 3 x C): a position's gradient to its 27 input taps in one product
        taps = weight.permute(0, 2, 3, 1).reshape(k, 9 * c)
        width = xp.shape[-1] - 2
        gx = xp.new_zeros(1, xp.shape[-2], xp.shape[-1], c)  # channels-last, as xp
        for (r0, r1, a), entries in zip(conv_relu_bands(xp, weight, bias, bands.rows), bands.weights):
            f = flat(a)
            g = None
            for i, w in entries:
                gi = f @ s[i]
                if bands.mean and grad_mean is not None:
                    gi += grad_mean[i]
                if w is not None:
                    gi.mul_(w)
                g = gi if g is None else g.add_(gi)
            g = torch.ops.aten.threshold_backward(g, f, 0)
            d = (g @ taps).reshape(r1 - r0, width, 3, 3, c)
            for i in range(3):
                for j in range(3):
                    gx[0, r0 + i:r1 + i, j:j + width] += d[:, :, i, j]
        return gx.permute(0, 3, 1, 2), None, None, None
