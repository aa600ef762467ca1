"""Loss terms as small modules, composed per tile into one objective.

Style: the Gram of the whole image with the tile's own part live (Galerne et al. 2024).  All Grams
here are *sums* over positions (``sum_p F(p) F(p)^T``) weighted by the tile's ownership weights;
dividing by the number of positions N of the whole image gives the statistics of the loss
(docs/how-it-works.md, "The loss").
Summing keeps tiles additive: the global sum is the frozen rest plus the live tile.  Every tensor
a loss holds is a registered buffer, so it lives on the device of the tile it was built for.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from hires.engine.stats import LayerTarget, Stats


def flat(feat: torch.Tensor) -> torch.Tensor:
    """(1, C, h, w) -> (h*w, C); a view, no copy, for channels-last activations.  (Not
    ``feat[0]``: indexing's backward allocates a zeroed copy of the whole activation.)"""
    return feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1])


BAND_SHARE = 0.2  # of a tile's positions, above which the Gram takes one weighted copy (OwnedRows)
GATHER_SHARE = 0.6  # of a tile's positions, under which a style region's Gram gathers its own


class OwnedRows(NamedTuple):
    """A tile's ownership weights (N positions) split for the loss's passes: the contiguous run of
    flat positions from the first of weight one to the last (``block``, counted at weight one), and
    the positions whose weight differs from that (``index``, with ``extra`` (len, 1): the weight
    minus one inside the run, the weight outside it; positions of weight zero outside it are left
    out).  A tile's weights are one over its core, zero in its context and ramp between them, so the
    run holds most positions and the rest are a thin band: the Gram and its backward then read the
    activations in place, with no weighted copy of them (a pass over 200 MB at an 880 px tile's
    relu1_1).  Where the band is a large part of the tile (small tiles in wide context: gathering
    and scattering it costs more than the copy: a 384 px render of 96 px tiles at relu3_1, 30% of
    their positions in the band, ran 5-15% slower; an 880 px print tile has 11%), ``block`` is
    None and ``extra`` holds every position's weight (N, 1): one weighted copy, as before."""
    block: tuple[int, int] | None
    index: torch.Tensor
    extra: torch.Tensor

    @classmethod
    def of(cls, weights: np.ndarray, device="cpu", dtype=torch.float32, gather: bool = False) -> "OwnedRows":
        """From a weight map of any shape (its positions in row-major order), made on the CPU.
        With ``gather`` (a style region's weights) a region that is not one run of ones with a thin
        band (a region beside another across the rows: a vertical boundary) and holds under
        GATHER_SHARE of the positions has ``block`` None, ``index`` its positions of nonzero weight
        and ``extra`` their weights: the Gram of those alone, not of a weighted copy of all."""
        w = np.asarray(weights, np.float64).reshape(-1)
        ones = np.flatnonzero(w == 1)
        b0, b1 = (int(ones[0]), int(ones[-1]) + 1) if len(ones) else (0, 0)
        extra = w.copy()
        extra[b0:b1] -= 1
        index = np.flatnonzero(extra)
        if len(index) > BAND_SHARE * len(w):
            support = np.flatnonzero(w)
            if gather and len(support) < GATHER_SHARE * len(w):  # (a region beside others: its part alone)
                return cls(None, torch.from_numpy(support).to(device),
                           torch.from_numpy(w[support].reshape(-1, 1)).to(device, dtype))
            return cls(None, torch.zeros(0, dtype=torch.long, device=device),
                       torch.from_numpy(w.reshape(-1, 1)).to(device, dtype))
        return cls((b0, b1), torch.from_numpy(index).to(device),
                   torch.from_numpy(extra[index].reshape(-1, 1)).to(device, dtype))


def _gram(f: torch.Tensor, rows: OwnedRows) -> torch.Tensor:
    """sum_p w_p f_p f_p^T with the weights as ``rows`` (the forward of _WeightedGram and _WeightedGrams)."""
    if rows.block is None and len(rows.index):  # gathered
        part = f.index_select(0, rows.index)
        return (part * rows.extra).T @ part
    if rows.block is None:
        return (f * rows.extra).T @ f
    b0, b1 = rows.block
    core = f[b0:b1]
    g = core.T @ core
    if len(rows.index):
        band = f.index_select(0, rows.index)
        g = g.addmm_((band * rows.extra).T, band)
    return g


class _WeightedGram(torch.autograd.Function):
    """sum_p w_p f_p f_p^T of f (N, C) with the weights split as ``OwnedRows``: the run's Gram read
    in place, plus the band's, weighted.  The backward is one matmul into the run's rows of the
    gradient, with the symmetrised incoming gradient, and the band's own rows added."""

    @staticmethod
    def forward(ctx, f, rows: OwnedRows):
        ctx.rows = rows
        ctx.save_for_backward(f)
        return _gram(f, rows)

    @staticmethod
    def backward(ctx, grad):
        (f,), rows = ctx.saved_tensors, ctx.rows
        s = grad + grad.T
        if rows.block is None and len(rows.index):  # gathered
            out = torch.zeros_like(f)
            return out.index_add_(0, rows.index, (f.index_select(0, rows.index) @ s).mul_(rows.extra)), None
        if rows.block is None:
            return (f @ s).mul_(rows.extra), None
        b0, b1 = rows.block
        out = torch.empty_like(f)
        out[:b0].zero_()
        out[b1:].zero_()
        torch.mm(f[b0:b1], s, out=out[b0:b1])
        if len(rows.index):
            out.index_add_(0, rows.index, (f.index_select(0, rows.index) @ s).mul_(rows.extra))
        return out, None


class _WeightedGrams(torch.autograd.Function):
    """The weighted Grams of one f (N, C) for several weight sets (a tile's style regions), stacked
    (sets, C, C): each as ``_WeightedGram`` makes it, and one gradient tensor in the backward, each
    set's rows added into it (not a full-size gradient per set, summed after)."""

    @staticmethod
    def forward(ctx, f, rows_list):
        ctx.rows_list = rows_list
        ctx.save_for_backward(f)
        return torch.stack([_gram(f, rows) for rows in rows_list])

    @staticmethod
    def backward(ctx, grad):
        (f,) = ctx.saved_tensors
        out = torch.zeros_like(f)
        for g, rows in zip(grad, ctx.rows_list):
            s = g + g.T
            if rows.block is None and len(rows.index):  # gathered
                out.index_add_(0, rows.index, (f.index_select(0, rows.index) @ s).mul_(rows.extra))
            elif rows.block is None:
                out.addcmul_(f @ s, rows.extra)
            else:
                b0, b1 = rows.block
                out[b0:b1].addmm_(f[b0:b1], s)
                if len(rows.index):
                    out.index_add_(0, rows.index, (f.index_select(0, rows.index) @ s).mul_(rows.extra))
        return out, None


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


def weighted_gram(f: torch.Tensor, rows: OwnedRows) -> torch.Tensor:
    """sum_p w_p f_p f_p^T for f (N, C) and the weights w as ``OwnedRows``."""
    return _WeightedGram.apply(f.contiguous(), rows)


def weighted_grams(f: torch.Tensor, rows_list: list[OwnedRows]) -> torch.Tensor:
    """(sets, C, C): sum_p w_p f_p f_p^T for each weight set of ``rows_list``."""
    return _WeightedGrams.apply(f.contiguous(), rows_list)


def weighted_squared_error(f: torch.Tensor, target: torch.Tensor, sqrt_w: torch.Tensor) -> torch.Tensor:
    """sum_p w_p |f_p - target_p|^2 for (N, C) tensors and sqrt_w = sqrt(w) of shape (N, 1)."""
    return _WeightedSquaredError.apply(f, target, sqrt_w)


class LayerStyleLoss(nn.Module):
    """One layer's style loss of the whole image while one tile is live.

    DESIGN: G = G_rest + G_t(x).  Departure: the tile's change is taken as its share of a change
    all tiles make together ((G_t(x) - G_t(x0)) / n_t instead of / N), so a tile closes its part
    of the global gap instead of all of it (which would overshoot by the number of tiles).  Times
    ``share`` = n_t / N, the gradient at x0 is exactly that of the whole-image loss restricted to
    the tile (tests/test_gradient.py); a single tile is exactly the untiled loss.
    """

    def __init__(self, glob: Stats, target: LayerTarget, weights: torch.Tensor, weight_sum: float,
                 mean_weight: float = 0.0, start: Stats | None = None, rows: OwnedRows | None = None,
                 scale: float = 1.0):
        """``weights``: the tile's ownership weight per position, (N, 1) on the tile's device;
        ``weight_sum`` their sum (a number, so that nothing waits on the device for it).  ``start``:
        the tile's own sums in ``glob`` (from the pass's statistics pass); without it, its sums at
        the first call.  ``rows``: the weights as OwnedRows on the tile's device (made from
        ``weights`` when not given, which must then be on the CPU).  ``scale``: a style region's
        share of the whole image's positions (``glob`` then is the region's statistics), so that a
        pixel's pull toward its region's painting does not depend on the region's size."""
        super().__init__()
        like = dict(dtype=weights.dtype, device=weights.device)
        g, m = glob.gram_mean()
        self.register_buffer("glob_gram", torch.as_tensor(g, **like))
        self.register_buffer("glob_mean", torch.as_tensor(m, **like))
        self.register_buffer("target_gram", target.gram.to(**like))
        self.register_buffer("target_mean", target.mean.to(**like))
        self.register_buffer("w", weights)
        rows = rows or OwnedRows.of(weights.numpy(), weights.device, weights.dtype)
        self.block = rows.block
        self.register_buffer("band_index", rows.index)
        self.register_buffer("band_extra", rows.extra)
        self.gram_norm, self.mean_norm = target.gram_norm, target.mean_norm
        self.mean_weight = mean_weight
        self.n_tile = max(weight_sum, 1e-6)
        self.share = weight_sum / glob.count * scale
        # the tile's own part of glob.  Taken from the statistics pass, not from the tile's start:
        # tiles of later colours start with their overlaps already refined by their neighbours, and
        # measured from there they would aim past the target by as much (a 256 px tile with 48 px
        # ramps at 1024 px came out pale and blurred)
        self.register_buffer("gram0", None if start is None else torch.as_tensor(start.gram, **like))
        self.register_buffer("mean0", None if start is None or not mean_weight else torch.as_tensor(start.mean, **like))

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """``f``: the tile's activations as (N, C) positions."""
        return self.with_gram(f, weighted_gram(f, self.rows()))

    def rows(self) -> OwnedRows:
        return OwnedRows(self.block, self.band_index, self.band_extra)

    def with_gram(self, f: torch.Tensor, g_sum: torch.Tensor) -> torch.Tensor:
        """The loss from ``g_sum``, the Gram sum of ``f`` weighted as this term's (made here or, for
        several regions at once, by ``weighted_grams``)."""
        return self.of_sums(g_sum, (self.w.T @ f)[0] if self.mean_weight else None)

    def of_sums(self, g_sum: torch.Tensor, m_sum: torch.Tensor | None) -> torch.Tensor:
        """The loss from the tile's weighted Gram and mean sums (``m_sum`` only with a mean weight),
        however they were made."""
        if self.gram0 is None:
            self.gram0 = g_sum.detach()
            self.mean0 = m_sum.detach() if m_sum is not None else None
        g = self.glob_gram + (g_sum - self.gram0) / self.n_tile
        loss = ((g - self.target_gram) ** 2).sum() / self.gram_norm
        if m_sum is not None:
            mu = self.glob_mean + (m_sum - self.mean0) / self.n_tile
            loss = loss + self.mean_weight * ((mu - self.target_mean) ** 2).sum() / self.mean_norm
        return loss * self.share


class ContentLoss(nn.Module):
    """Squared feature error against the content's, per position of the whole image."""

    def __init__(self, target: torch.Tensor, weights: torch.Tensor, norm: float):
        super().__init__()
        self.register_buffer("target", target)
        self.register_buffer("sqrt_w", weights.sqrt())
        self.norm = norm

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return weighted_squared_error(f, self.target, self.sqrt_w) / self.norm


class TVLoss(nn.Module):
    """Squared total variation of (1, 3, h, w), per pixel of the whole image."""

    def __init__(self, n_pixels: float):
        super().__init__()
        self.n_pixels = n_pixels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dy = x[..., 1:, :] - x[..., :-1, :]
        dx = x[..., :, 1:] - x[..., :, :-1]
        return (dy.pow(2).sum() + dx.pow(2).sum()) / self.n_pixels


class TileObjective(nn.Module):
    """The loss of one tile: the network's features of the tile, then weighted terms.

    ``style`` maps layer names to their LayerStyleLoss terms (one, or one per style region in the
    tile); ``content`` is (layer, ContentLoss) or None; ``banded`` is (layer, hires.engine.bandgram.Bands)
    for the style layer the network makes as a Gram without its activation (``net.first_gram``),
    or None."""

    def __init__(self, net, layers, style: dict[str, list[LayerStyleLoss]], content=None, tv: TVLoss | None = None,
                 style_weight: float = 1.0, content_weight: float = 0.0, tv_weight: float = 0.0, banded=None):
        super().__init__()
        self.banded, self.bands = banded if banded is not None else (None, None)
        self.net, self.layers = net, tuple(n for n in layers if n != self.banded)
        self.n_style = len(style)
        self.style = nn.ModuleDict({name: nn.ModuleList(terms) for name, terms in style.items() if terms})
        self.content_layer, self.content = content if content is not None else (None, None)
        self.tv = tv
        self.style_weight, self.content_weight, self.tv_weight = style_weight, content_weight, tv_weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = self.net(x, self.layers)
        style = x.new_zeros(())
        for name, terms in self.style.items():
            if name == self.banded:
                style = style + sum(term.of_sums(g, m if term.mean_weight else None)
                                    for term, (g, m) in zip(terms, self._banded_sums(x)))
            elif len(terms) == 1:
                style = style + terms[0](flat(feats[name]))
            else:  # style regions: their Grams together, one gradient tensor
                f = flat(feats[name])
                grams = weighted_grams(f, [term.rows() for term in terms])
                style = style + sum(term.with_gram(f, g) for term, g in zip(terms, grams))
        loss = self.style_weight * style / max(self.n_style, 1)
        if self.content is not None:
            loss = loss + self.content_weight * self.content(flat(feats[self.content_layer]))
        if self.tv is not None:
            loss = loss + self.tv_weight * self.tv(x)
        return loss

    def _banded_sums(self, x: torch.Tensor):
        """(Gram sum, mean sum) of the banded layer for each of its terms, in order."""
        g_sum, m_sum = self.net.first_gram(x, self.bands)
        return zip(g_sum, m_sum) if self.bands.stacked else [(g_sum, m_sum)]
