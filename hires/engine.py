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
from hires.config import Settings
from hires.kernels import blend_accumulate, blend_normalize, gram_accumulate
from hires.nets import LAYER_STRIDE, build_network, flops_per_pixel
from hires.progress import LevelStarted, Note, Step, ignore
from hires.pyramid import Level
from hires.tiles import Tile, blend_window, take

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


def owned_slice(tile: Tile, stride: int) -> tuple[slice, slice]:
    """The tile's owned core in the feature map of a layer with ``stride``."""
    y0, y1, x0, x1 = tile.core
    ry, rx = tile.region[0], tile.region[2]
    return slice((y0 - ry) // stride, (y1 - ry) // stride), slice((x0 - rx) // stride, (x1 - rx) // stride)


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
        torch.manual_seed(settings.seed)
        self.net, self.network_name, message = build_network(
            settings.network, settings.weights, settings.pooling, settings.seed)
        self.net.to(self.device)
        self.net.set_padding("circular" if settings.seamless else "zeros")
        self.progress(Note(message))
        self.counters = Counters()

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
            feats = self.features(to_tensor(take(image, tile.region), self.device), layers, deepest, False)
            for name in layers:
                f = feats[name]
                ys, xs = owned_slice(tile, LAYER_STRIDE[name])
                owned = losses.flat(f[:, :, ys, xs]).cpu().numpy()
                st = stats.get(name)
                if st is None:
                    c = f.shape[1]
                    st = stats[name] = Stats(np.zeros((c, c)), np.zeros(c))
                st.count += gram_accumulate(owned, np.ones(len(owned), np.float32), st.gram, st.mean)
        return stats

    # ------------------------------------------------------------ refinement

    def refine(self, canvas: np.ndarray, content: np.ndarray | None, targets: dict[str, losses.LayerTarget],
               level: Level, tiles: list[Tile], n_levels: int) -> np.ndarray:
        """One pass over ``tiles``; returns the new canvas (float32 (H, W, 3))."""
        s = self.s
        H, W = canvas.shape[:2]
        style_layers = level.style_layers
        glob = self.stats_pass(canvas, style_layers, level.deepest, tiles)
        glob_t = {n: tuple(torch.from_numpy(a.astype(np.float32)).to(self.device) for a in st.gram_mean())
                  for n, st in glob.items()}
        content_count = None
        acc = np.zeros_like(canvas)
        wsum = np.zeros(canvas.shape[:2], np.float32)
        for tile in tiles:
            x_region = to_tensor(take(canvas, tile.region), self.device)
            mask = torch.zeros((1, 1) + tile.shape, device=self.device)
            by0, by1, bx0, bx1 = tile.blend
            ry0, rx0 = tile.region[0], tile.region[2]
            mask[..., by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0] = 1.0
            content_feat = None
            if content is not None and s.content_weight:
                cf = self.features(to_tensor(take(content, tile.region), self.device), [level.content_layer],
                                   level.content_layer, False)[level.content_layer]
                ys, xs = owned_slice(tile, LAYER_STRIDE[level.content_layer])
                content_feat = cf[:, :, ys, xs]
                if content_count is None:
                    st = LAYER_STRIDE[level.content_layer]
                    content_count = float((H // st) * (W // st)) if st > 1 else float(H * W)
            x_new = self._optimise_tile(x_region, mask, content_feat, content_count, glob, glob_t, targets,
                                        level, tile, len(tiles), n_levels, float(H * W))
            blend = x_new[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0]
            blend_accumulate(acc, wsum, blend, blend_window(tile), by0, bx0)
        return blend_normalize(acc, wsum)

    def _optimise_tile(self, x_region, mask, content_feat, content_count, glob, glob_t, targets, level,
                       tile, n_tiles, n_levels, n_px_total) -> np.ndarray:
        s = self.s
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

        def closure():
            t_start = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            xin = fixed + (x - fixed) * mask
            feats = self.features(xin, layers, level.deepest, True)
            style = xin.new_zeros(())
            share = 1.0
            for name in level.style_layers:
                ys, xs = owned_slice(tile, LAYER_STRIDE[name])
                f = losses.flat(feats[name][:, :, ys, xs])
                g_sum, m_sum = f.T @ f, f.sum(0)
                if name not in before:
                    before[name] = (g_sum.detach(), m_sum.detach(), float(f.shape[0]))
                g0, m0, n_t = before[name]
                share = n_t / n_total[name]
                # DESIGN: G = G_rest + G_t(x).  Departure: the tile's change is taken as its share
                # of a change all tiles make together ((G_t(x) - G_t(x0)) / n_t instead of / N), so
                # a tile closes its part of the global gap instead of all of it (which would
                # overshoot by the number of tiles).  The gradient at x0 is that of the whole
                # image (after the share factor below); a single tile is exactly the untiled loss.
                g = glob_t[name][0] + (g_sum - g0) / max(n_t, 1.0)
                t = targets[name]
                term = ((g - t.gram) ** 2).sum() / t.gram_norm
                if s.mean_weight:
                    mu = glob_t[name][1] + (m_sum - m0) / max(n_t, 1.0)
                    term = term + s.mean_weight * ((mu - t.mean) ** 2).sum() / (t.mean.pow(2).sum() + 1e-8)
                style = style + term * share
            loss = s.style_weight * style / len(level.style_layers)
            if content_feat is not None:
                cl = level.content_layer
                f = feats[cl]
                ys, xs = owned_slice(tile, LAYER_STRIDE[cl])
                loss = loss + s.content_weight * losses.content_loss(
                    f[:, :, ys, xs], content_feat, content_count, targets[cl].energy)
            if s.tv_weight:
                loss = loss + s.tv_weight * losses.tv_loss(xin, n_px_total)
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
