"""The coarse-to-fine engine: whole-frame base level, then tiles with exact global statistics.

Per level: (1) a statistics pass accumulates the Gram and mean of the whole current image tile
by tile with ``kernels.gram`` (ownership weights count each position once); style targets come
from the style images the same way.  (2) A refine pass optimises each tile (plus fixed context)
against the whole image's statistics with the tile's own part live, and ``kernels.blend``
feathers the result into a new canvas that is normalised once.  (3) Optionally a second pass
with the grid shifted by half a tile.  The base level is the same code with a single tile.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from hires import losses
from hires.canvas import Buffers, release, return_memory_promptly, trim
from hires.config import Settings
from hires.kernels import blend_into, gram_accumulate
from hires.nets import LAYER_STRIDE, build_network, flops_per_pixel
from hires.progress import Note, Step, ignore
from hires.pyramid import Level
from hires.tiles import Tile, blend_window, grid, padding, take

log = logging.getLogger(__name__)



def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        from hires.errors import OptionError
        raise OptionError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)


@dataclass
class Stats:
    """Whole-image statistics of one layer as sums: sum F F^T, sum F, and the position count."""
    gram: np.ndarray
    mean: np.ndarray
    count: float = 0.0

    def gram_mean(self) -> tuple[np.ndarray, np.ndarray]:
        return self.gram / self.count, self.mean / self.count


@dataclass
class LevelReport:
    level: int
    width: int
    height: int
    tiles: int
    iterations: int
    wall_s: float = 0.0
    net_s: float = 0.0
    net_gflop: float = 0.0


@dataclass
class Counters:
    net_s: float = 0.0
    net_flop: float = 0.0
    work_done: float = 0.0
    work_total: float = 1.0
    levels: list[LevelReport] = field(default_factory=list)


def ownership(tile: Tile, strides) -> dict[int, np.ndarray]:
    """The tile's ownership weight at every position of its region's feature map, per stride.

    The weight is the tile's blend window (zero outside its blend area).  Windows of all tiles sum
    to one at every pixel, and average pooling keeps that true on each layer's grid (tile origins
    are aligned to the deepest stride), so every position of the whole image counts exactly once
    in the global statistics, split across tiles where they overlap, just as the pixels are blended.
    """
    h, w = tile.shape
    pix = np.zeros((h, w), np.float32)
    by0, by1, bx0, bx1 = tile.blend
    ry0, rx0 = tile.region[0], tile.region[2]
    pix[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0] = blend_window(tile)
    out = {}
    for s in set(strides):
        hs, ws = h // s, w // s
        out[s] = pix[:hs * s, :ws * s].reshape(hs, s, ws, s).mean(axis=(1, 3))
    return out


def owned_box(wmap: np.ndarray) -> tuple[slice, slice]:
    """The smallest rectangle holding every position with weight > 0.  Slicing activations to it
    (instead of gathering positions) keeps the backward pass a cheap copy, not a scatter."""
    rows = np.flatnonzero(wmap.any(axis=1))
    cols = np.flatnonzero(wmap.any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def to_tensor(a: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].contiguous().to(device)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t[0].permute(1, 2, 0).detach().cpu().numpy())


class Engine:
    """Holds the network and runs statistics and refine passes; see the module docstring."""

    def __init__(self, settings: Settings, progress=ignore):
        self.s = settings
        self.progress = progress
        self.device = pick_device(settings.device)
        return_memory_promptly()
        torch.manual_seed(settings.seed)
        self.net, self.network_name, message = build_network(
            settings.network, settings.weights, settings.pooling, settings.seed)
        self.net.to(self.device)
        # reflect padding keeps the frame edges from darkening the way zero padding does
        self.net.set_padding("circular" if settings.seamless else "reflect")
        self.progress(Note(message))
        self.counters = Counters()
        self.buffers = Buffers(None, False)  # the pipeline sets disk-backed buffers when planned

    # ------------------------------------------------------------ network passes

    def features(self, x: torch.Tensor, layers, deepest: str, grad: bool = False):
        """Activations at ``layers``; no-grad passes are timed and counted here, the timing of
        passes with a backward is done by the caller around forward and backward together."""
        t = time.perf_counter()
        with torch.set_grad_enabled(grad):
            out = self.net(x, layers)
        if not grad:
            self.counters.net_s += time.perf_counter() - t
            self.counters.net_flop += flops_per_pixel(deepest) * x.shape[-1] * x.shape[-2]
        return out

    def stats_pass(self, image: np.ndarray, layers, deepest: str, tiles: list[Tile]) -> dict[str, Stats]:
        """Whole-image Gram sums of ``image`` at ``layers``, accumulated tile by tile."""
        stats = {}
        for tile in tiles:
            self._pad(tile, image.shape)
            feats = self.features(to_tensor(take(image, tile.region), self.device), layers, deepest, False)
            weights = ownership(tile, [LAYER_STRIDE[n] for n in layers])
            for name in layers:
                f = feats[name]
                wmap = weights[LAYER_STRIDE[name]]
                ys, xs = owned_box(wmap)
                owned = losses.flat(f[:, :, ys, xs]).cpu().numpy()
                st = stats.get(name)
                if st is None:
                    c = f.shape[1]
                    st = stats[name] = Stats(np.zeros((c, c)), np.zeros(c))
                st.count += gram_accumulate(owned, wmap[ys, xs].ravel(), st.gram, st.mean)
            del feats
            release(image)
            trim()
        return stats

    def style_loss(self, image: np.ndarray, targets: dict[str, losses.LayerTarget], level: Level,
                   tiles: list[Tile] | None = None) -> float:
        """The whole-image style loss of ``image`` (mean over the level's style layers)."""
        tiles = tiles or grid(image.shape[1], image.shape[0], max(image.shape[:2]), 0, 0)
        stats = self.stats_pass(image, level.style_layers, level.deepest, tiles)
        total = 0.0
        for name in level.style_layers:
            g, _ = stats[name].gram_mean()
            t = targets[name]
            total += float(((g - t.gram.double().numpy()) ** 2).sum() / t.gram_norm)
        return total / len(level.style_layers)

    def _pad(self, tile: Tile, shape) -> None:
        self.net.set_padding(padding(tile, shape[1], shape[0], self.s.seamless))

    # ------------------------------------------------------------ refinement

    def refine(self, canvas: np.ndarray, content: np.ndarray | None, targets: dict[str, losses.LayerTarget],
               level: Level, tiles: list[Tile], n_levels: int) -> np.ndarray:
        """One pass over ``tiles``, updating ``canvas`` (float32 (H, W, 3)) in place; returns it."""
        s = self.s
        H, W = canvas.shape[:2]
        glob = self.stats_pass(canvas, level.style_layers, level.deepest, tiles)
        glob_t = {n: tuple(torch.from_numpy(a.astype(np.float32)).to(self.device) for a in st.gram_mean())
                  for n, st in glob.items()}
        wsum = self.buffers.zeros("weights", canvas.shape[:2])
        for tile in tiles:
            self._pad(tile, canvas.shape)
            x_region = to_tensor(take(canvas, tile.region), self.device)
            mask = torch.zeros((1, 1) + tile.shape, device=self.device)
            by0, by1, bx0, bx1 = tile.blend
            ry0, rx0 = tile.region[0], tile.region[2]
            mask[..., by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0] = 1.0
            content_feat = None
            if content is not None and s.content_weight:
                content_feat = self.features(to_tensor(take(content, tile.region), self.device),
                                             [level.content_layer], level.content_layer)[level.content_layer]
            x_new = self._optimise_tile(x_region, mask, content_feat, glob, glob_t, targets, level, tile,
                                        len(tiles), n_levels, (H, W))
            blend = x_new[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
            # Gauss-Seidel on pixels: later tiles read this tile's result as their context and as
            # the start of their overlap, so both sides of a cut converge to the same texture
            # instead of two independent ones whose average would blur the seam.
            blend_into(canvas, wsum, blend, blend_window(tile), by0, bx0)
            del x_new, blend, x_region, content_feat
            release(canvas, wsum, content)
            trim()
        return canvas

    def _optimise_tile(self, x_region, mask, content_feat, glob, glob_t, targets, level, tile, n_tiles,
                       n_levels, canvas_hw: tuple[int, int]) -> np.ndarray:
        s = self.s
        H, W = canvas_hw
        fixed = x_region
        x = x_region.clone().requires_grad_(True)
        layers = level.layers
        n_total = {n: glob[n].count for n in level.style_layers}
        before: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}
        iters = level.iterations
        work_per_eval = flops_per_pixel(level.deepest) * x.shape[-1] * x.shape[-2]
        state = {"evals": 0, "loss": float("nan")}

        if s.optimizer == "lbfgs":
            # an "iteration" is one loss evaluation (forward + backward), the unit of cost; the
            # strong-Wolfe line search makes the first steps useful, which matters at fine
            # levels that get only a few evaluations per tile
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=iters, max_eval=iters, history_size=10,
                                    tolerance_grad=-1.0, tolerance_change=-1.0, line_search_fn="strong_wolfe")
        else:
            opt = torch.optim.Adam([x], lr=s.lr)

        # per stride: the ownership weights of every position of the tile's feature map (zero in the
        # context), as w and sqrt(w) columns; losses run on whole maps, which are views of the
        # channels-last activations, so neither the forward nor the backward copies them
        owned = {}
        for st, wmap in ownership(tile, {LAYER_STRIDE[n] for n in layers}).items():
            w = torch.from_numpy(np.ascontiguousarray(wmap).reshape(-1, 1)).to(x.device)
            owned[st] = (w, w.sqrt())
        cl = level.content_layer
        if content_feat is not None:
            content_flat = losses.flat(content_feat)
            cs = LAYER_STRIDE[cl]
            n_content = float((H // cs) * (W // cs))

        def closure():
            t_start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            xin = fixed + (x - fixed) * mask
            feats = self.features(xin, layers, level.deepest, True)
            style = xin.new_zeros(())
            for name in level.style_layers:
                w, sqrt_w = owned[LAYER_STRIDE[name]]
                f = losses.flat(feats[name])
                g_sum = losses.weighted_gram(f, sqrt_w)
                m_sum = (w.T @ f)[0] if s.mean_weight else g_sum.new_zeros(())
                if name not in before:
                    before[name] = (g_sum.detach(), m_sum.detach(), float(w.sum()))
                g0, m0, n_t = before[name]
                share = n_t / n_total[name]
                # DESIGN: G = G_rest + G_t(x).  Departure: the tile's change is taken as its share
                # of a change all tiles make together ((G_t(x) - G_t(x0)) / n_t instead of / N), so
                # a tile closes its part of the global gap instead of all of it (which would
                # overshoot by the number of tiles).  Times `share`, the gradient at x0 is that of
                # the whole-image loss; a single tile is exactly the untiled loss.
                g = glob_t[name][0] + (g_sum - g0) / max(n_t, 1e-6)
                t = targets[name]
                term = ((g - t.gram) ** 2).sum() / t.gram_norm
                if s.mean_weight:
                    mu = glob_t[name][1] + (m_sum - m0) / max(n_t, 1e-6)
                    term = term + s.mean_weight * ((mu - t.mean) ** 2).sum() / (t.mean.pow(2).sum() + 1e-8)
                style = style + term * share
            loss = s.style_weight * style / len(level.style_layers)
            if content_feat is not None:
                err = losses.weighted_squared_error(losses.flat(feats[cl]), content_flat, owned[LAYER_STRIDE[cl]][1])
                loss = loss + s.content_weight * err / (n_content * targets[cl].energy)
            if s.tv_weight:
                loss = loss + s.tv_weight * losses.tv_loss(xin, float(H * W))
            loss.backward()
            self.counters.net_s += time.perf_counter() - t_start
            # forward plus the backward to the input (weights are frozen), about 2x forward
            self.counters.net_flop += 2 * work_per_eval
            state["evals"] += 1
            state["loss"] = float(loss.detach())
            self.counters.work_done += 2 * work_per_eval
            if state["evals"] <= iters:
                self.progress(Step(level.index, n_levels, tile.index + 1, n_tiles, state["evals"], iters,
                                   state["loss"], self.counters.work_done, self.counters.work_total))
            return loss

        if iters > 0:
            if s.optimizer == "lbfgs":
                opt.step(closure)
            else:
                for _ in range(iters):
                    closure()
                    opt.step()
                    with torch.no_grad():
                        x.clamp_(0.0, 1.0)
        with torch.no_grad():
            out = (fixed + (x - fixed) * mask).clamp_(0.0, 1.0)
        return to_numpy(out)
