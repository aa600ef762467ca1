"""The tile engine: the network, statistics passes and one tile's refinement.

Per level: (1) a statistics pass accumulates the Gram and mean of the whole current image tile
by tile (``hires.engine.stats``; ownership weights count each position once).  (2) A refine pass
optimises each tile (plus fixed context) against the whole image's statistics with the tile's
own part live (``hires.engine.losses``), and ``hires.engine.passes`` feathers the result into the canvas.
The base level is the same code with a single tile.  The level loop is in ``hires.rendering.pipeline``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from hires.engine import losses
from hires.engine.adam import Adam
from hires.engine.bandgram import Bands, band_rows
from hires.core.canvas import give_back_memory, release, reuse_memory, trim
from hires.core.config import Settings
from hires.core.device import pick_device, pick_precision
from hires.core.layers import BANDED, LAYERS, banded, flops_per_pixel
from hires.engine.nets import LAYER_STRIDE, build_network
from hires.core.progress import Note, TileStarted, ignore
from hires.engine.reports import Counters, TileProgress
from hires.engine.pyramid import Level
from hires.engine.regions import region_key, tile_regions
from hires.engine.stats import LayerTarget, Stats
from hires.engine.tiles import Tile, blend_mask, blend_part, grid, owned_box, ownership, padding, take

log = logging.getLogger(__name__)


@dataclass
class RefineJob:
    """What every tile of a refine pass shares: the level, the whole image's statistics, the style
    targets, the canvas size, each tile's own statistics at the start of the pass, and the pass's
    context (counters, progress)."""
    level: Level
    glob: dict
    targets: dict
    canvas_hw: tuple[int, int]
    n_tiles: int
    ctx: object = None           # the pass's passes.PassContext (counters, progress), on the driver only
    starts: dict | None = None   # tile index -> {layer: Stats} of its owned positions at the pass's start
    reuse: bool = True           # evaluations reuse freed memory (canvas.reuse_memory)

    def shared(self) -> "RefineJob":
        """The part a worker needs (no context: counters and callbacks stay on the driver)."""
        return dataclasses.replace(self, ctx=None)


def to_tensor(a: np.ndarray, device, dtype=torch.float32) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].contiguous().to(device=device, dtype=dtype)


def to_numpy(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t[0].permute(1, 2, 0).detach().cpu().numpy().astype(np.float32, copy=False))


def weight_sets(own: dict[int, np.ndarray], masks: np.ndarray | None) -> dict:
    """The weights the statistics of a tile are made with, per stride: its ownership (named None),
    or with ``masks`` (the level's style region maps under the tile's region) each style region's
    share of it (named by the region's index)."""
    if masks is None:
        return {None: own}
    return dict(enumerate(tile_regions(masks, own)))


def stats_key(layer: str, region: int | None) -> str:
    """The name of a layer's statistics: the layer's, or a style region's of it."""
    return layer if region is None else region_key(layer, region)


def in_tile_order(runs, tiles: list[Tile]):
    """The results of ``runs`` ((tile index, result) pairs, in any order) in the order of ``tiles``,
    each yielded as soon as those before it are in."""
    pending, order = {}, [t.index for t in tiles]
    k = 0
    for index, result in runs:
        pending[index] = result
        while k < len(order) and order[k] in pending:
            yield pending.pop(order[k])
            k += 1


class Engine:
    """The tile engine: the network on its device, a tile's statistics, its objective and its
    optimisation (``refine_tile``); the whole image's statistics over its tiles (``stats_pass``).
    The refine pass over a level's tiles, with checkpoints, progress and blending, is
    ``hires.engine.passes``'s.  Its settings change only by ``use_settings``."""

    def __init__(self, settings: Settings, progress=ignore):
        self.settings = settings
        self.progress = progress
        self.device = pick_device(settings.device)
        self.dtype = torch.float32
        torch.manual_seed(settings.seed)
        self.net, self.network_name, message = build_network(
            settings.network, settings.weights, settings.pooling, settings.seed)
        self.net.to(self.device)
        self.bf16 = pick_precision(settings.precision, self.device) == "bf16"
        self.precision = "fp32"
        if self.bf16:
            message += (", bfloat16 convolutions" if settings.precision == "bf16"
                        else ", bfloat16 convolutions at the levels Adam refines")
        self.progress(Note(message))

    def use_settings(self, settings: Settings) -> None:
        """Take the settings of the next work (a level's optimiser and arithmetic, a worker's task,
        the probe's); the network stays the one the engine was built with."""
        self.settings = settings

    def level_precision(self, level: Level) -> str:
        """The arithmetic of ``level``'s convolutions: with ``--precision auto`` bf16 only where Adam
        refines (L-BFGS's line search compares the losses of nearby points, which bf16's rounding
        can make inconsistent: a 1024 px texture's L-BFGS levels ended at 1.85x fp32's loss in bf16,
        benchmarks/results/precision.json); ``--precision bf16`` everywhere."""
        if not self.bf16:
            return "fp32"
        adam = self.settings.optimizer_for(level.iterations) == "adam"
        return "bf16" if self.settings.precision == "bf16" or adam else "fp32"

    def use_level(self, level: Level) -> str:
        """Set the network's arithmetic for ``level`` (before its statistics and refinement)."""
        self.use_precision(self.level_precision(level))
        return self.precision

    def use_precision(self, precision: str) -> None:
        """Set the network's arithmetic to ``precision`` (a worker takes its driver's level's)."""
        self.precision = precision
        self.net.set_precision(precision)

    # ------------------------------------------------------------ network passes

    def tile_stats(self, region: np.ndarray, tile: Tile, layers, canvas_hw: tuple[int, int],
                   masks: np.ndarray | None = None) -> tuple[dict[str, Stats], float, float]:
        """The Gram sums of one tile's owned positions (``region``: the tile's region of the image),
        and the seconds and FLOP they took (the network's and the Gram products', as hires.core.layers
        counts them; a banded layer's are one).  With ``masks`` (the level's style region maps
        under the tile's region) the sums of each region, named ``regions.region_key``."""
        self.net.set_padding(padding(tile, canvas_hw[1], canvas_hw[0]))
        x = to_tensor(region, self.device, self.dtype)
        own = ownership(tile, [LAYER_STRIDE[n] for n in layers])
        sets = weight_sets(own, masks)
        name_banded = banded(layers)
        t0 = time.perf_counter()
        stats = {}
        with torch.no_grad():
            feats = self.net(x, [n for n in layers if n != name_banded])
            if name_banded is not None:  # its activation a band of rows at a time (hires.engine.bandgram)
                st = LAYER_STRIDE[name_banded]
                for r, sums in zip(sets, self.band_stats(x, [w[st] for w in sets.values()])):
                    stats[stats_key(name_banded, r)] = sums
        for name in layers:
            if name != name_banded:
                f = feats[name]
                for r, weights in sets.items():
                    stats[stats_key(name, r)] = sums = Stats.empty(f.shape[1])
                    sums.add(f, weights[LAYER_STRIDE[name]])
        seconds, flop = time.perf_counter() - t0, flops_per_pixel(layers) * x.shape[-1] * x.shape[-2]
        return stats, seconds, flop

    def band_stats(self, x: torch.Tensor, wmaps: list[np.ndarray]) -> list[Stats]:
        """The banded layer's sums over ``x`` for each ownership map of ``wmaps`` (its map's shape),
        added band by band by the same float64 kernel as any layer's, over the rows that own anything."""
        union = np.any([w > 0 for w in wmaps], axis=0)
        out = [Stats.empty(LAYERS[BANDED].channels) for _ in wmaps]
        if not union.any():
            return out
        ys, _ = owned_box(union)
        rows = [(r0, r1) for r0, r1 in band_rows(ys.start, ys.stop, union.shape[1]) if union[r0:r1].any()]
        for r0, r1, f in self.net.first_bands(x, rows):
            for stats, wmap in zip(out, wmaps):
                stats.add(f, wmap[r0:r1])
        return out

    def stats_pass(self, image: np.ndarray, layers, tiles: list[Tile], counters: Counters | None = None,
                   executor=None, starts: dict | None = None, masks: np.ndarray | None = None) -> dict[str, Stats]:
        """Whole-image Gram sums of ``image`` at ``layers`` (of each style region of ``masks``, the
        level's region maps, when given): each tile's sums (on ``executor``'s workers when given),
        added up in tile order.  ``starts``, when given, receives each tile's own sums (in float32:
        a level's worth of them is held through its pass)."""
        runs = (executor or self).tile_stats_runs(image, layers, tiles, masks)
        stats: dict[str, Stats] = {}
        # the runs first: zip then asks them once more after the last tile, so they run to their end
        # (a cluster's runs log the pass there); tiles first would stop before asking
        for (tile_stats, seconds, flop), tile in zip(in_tile_order(runs, tiles), tiles):
            if counters is not None:
                counters.add(seconds, flop, work=0.0)
            for name, st in tile_stats.items():
                stats.setdefault(name, Stats.empty(len(st.mean))).merge(st)
            if starts is not None:
                starts[tile.index] = {name: Stats(st.gram.astype(np.float32), st.mean.astype(np.float32), st.count)
                                      for name, st in tile_stats.items()}
        return stats

    def tile_stats_runs(self, image: np.ndarray, layers, tiles: list[Tile], masks: np.ndarray | None = None):
        """(tile index, tile_stats result) for each tile, in process, one tile at a time."""
        for tile in tiles:
            crop = None if masks is None else take(masks, tile.region)
            yield tile.index, self.tile_stats(take(image, tile.region), tile, layers, image.shape[:2], crop)
            release(image)
            trim()

    def style_loss(self, image: np.ndarray, targets: dict[str, LayerTarget], level: Level,
                   tiles: list[Tile] | None = None) -> float:
        """The whole-image style loss of ``image`` (mean over the level's style layers)."""
        tiles = tiles or grid(image.shape[1], image.shape[0], max(image.shape[:2]), 0, 0, self.settings.seamless)
        stats = self.stats_pass(image, level.style_layers, tiles)
        total = 0.0
        for name in level.style_layers:
            g, _ = stats[name].gram_mean()
            t = targets[name]
            total += float(((g - t.gram.double().cpu().numpy()) ** 2).sum() / t.gram_norm)
        return total / len(level.style_layers)

    # ------------------------------------------------------------ refinement

    def objective(self, tile: Tile, job: "RefineJob", content: np.ndarray | None,
                  masks: np.ndarray | None = None) -> losses.TileObjective:
        """The loss of one tile of ``job``'s pass, built once: every tensor on the engine's device
        and dtype.  ``content`` is the content image's part under the tile's region (or None);
        ``masks`` the level's style region maps there (or None: one look over the whole frame)."""
        s, level = self.settings, job.level
        H, W = job.canvas_hw
        self.net.set_padding(padding(tile, W, H))
        wmaps = ownership(tile, {LAYER_STRIDE[n] for n in level.layers})
        weights = {st: torch.from_numpy(np.ascontiguousarray(w).reshape(-1, 1)).to(self.device, self.dtype)
                   for st, w in wmaps.items()}
        style, bands = self.style_terms(tile, job, weight_sets(wmaps, masks))
        content_term = None
        cl = level.content_layer
        if content is not None and s.content_weight:
            with torch.no_grad():
                feat = self.net(to_tensor(content, self.device, self.dtype), [cl])[cl]
            stride = LAYER_STRIDE[cl]
            norm = -(-H // stride) * -(-W // stride) * job.targets[cl].energy
            content_term = (cl, losses.ContentLoss(losses.flat(feat), weights[stride], norm))
        tv = losses.TVLoss(float(H * W)) if s.tv_weight else None
        return losses.TileObjective(self.net, level.layers, style, content_term, tv,
                                    s.style_weight, s.content_weight, s.tv_weight, bands)

    def style_terms(self, tile: Tile, job: "RefineJob", sets: dict):
        """The tile's style terms per layer, one per weight set of ``sets`` (``weight_sets``: its
        ownership, or each style region's share of it) that has positions in the tile, and (layer,
        Bands) for the layer made as a Gram without its activation (hires.engine.bandgram), or None."""
        s, level = self.settings, job.level
        start = job.starts.get(tile.index) if job.starts else None
        H, W = job.canvas_hw
        style, banded_sets = {}, []
        for name in level.style_layers:
            st, terms = LAYER_STRIDE[name], []
            for r, wmaps in sets.items():
                key, wmap = stats_key(name, r), wmaps[st]
                glob, total = job.glob[key], float(wmaps[st].sum(dtype=np.float64))
                if glob.count <= 0 or total <= 0:  # a region with no pixel in the tile (or the level)
                    continue
                # a region's share of the layer's positions (each counted once over all tiles)
                scale = 1.0 if r is None else glob.count / (-(-H // st) * -(-W // st))
                w = torch.from_numpy(np.ascontiguousarray(wmap).reshape(-1, 1)).to(self.device, self.dtype)
                rows = losses.OwnedRows.of(wmap, self.device, self.dtype, gather=r is not None)
                terms.append(losses.LayerStyleLoss(glob, job.targets[key], w, total, s.mean_weight,
                                                   None if start is None else start[key], rows, scale))
                if name == level.banded:
                    banded_sets.append(w)
            style[name] = terms
        if level.banded is None or not banded_sets:
            return style, None
        h, w = next(iter(sets.values()))[LAYER_STRIDE[level.banded]].shape
        bands = Bands.of(banded_sets if len(sets) > 1 or None not in sets else banded_sets[0], h, w,
                         mean=bool(s.mean_weight))
        return style, (level.banded, bands)

    @staticmethod
    def tile_flop(tile: Tile, level: Level) -> float:
        """FLOP of one forward pass over the tile's region at the level's depth."""
        return flops_per_pixel(level.layers) * tile.shape[0] * tile.shape[1]

    def refine_tile(self, tile: Tile, job: "RefineJob", region: np.ndarray, content: np.ndarray | None,
                    report, masks: np.ndarray | None = None) -> np.ndarray:
        """One tile optimised from ``region`` (its region of the canvas) against the whole image's
        statistics; ``content`` is the content under the region, ``masks`` the style region maps
        there (or None).  Returns the new pixels of the tile's blend area (the rest of the region
        is context, held fixed)."""
        objective = self.objective(tile, job, content, masks)
        x0 = to_tensor(region, self.device, self.dtype)
        mask = torch.from_numpy(blend_mask(tile))[None, None].to(self.device, self.dtype)
        x = to_numpy(self.optimise(objective, x0, mask, job.level.iterations, report, job.reuse))
        return np.ascontiguousarray(blend_part(x, tile))

    def refine_runs(self, canvas: np.ndarray, content: np.ndarray | None, tiles: list[Tile], job: RefineJob,
                    masks: np.ndarray | None = None):
        """(tile, its new blend area) for each of ``tiles`` in this process, one after another, each
        evaluation reported as a Step event; ``masks``: the level's style region maps, or None."""
        ctx = job.ctx
        for tile in tiles:
            self.progress(TileStarted(job.level.index, ctx.pass_index, tile.index + 1, job.n_tiles))
            report = TileProgress(self.progress, ctx.counters, job.level, ctx.n_levels, tile.index + 1, job.n_tiles,
                                  self.tile_flop(tile, job.level))
            part = None if content is None else take(content, tile.region)
            crop = None if masks is None else take(masks, tile.region)
            yield tile, self.refine_tile(tile, job, take(canvas, tile.region), part, report, crop)

    def optimise(self, objective, x0: torch.Tensor, mask: torch.Tensor, iters: int, report,
                 reuse: bool = True) -> torch.Tensor:
        """``iters`` loss evaluations of ``objective`` on the pixels of ``x0`` where ``mask`` is 1
        (the rest is fixed context); returns the result clamped to [0, 1].  With ``reuse`` the
        evaluations run inside ``canvas.reuse_memory`` (the optimiser's steps outside it, so its
        long-lived vectors do not split the heap's free blocks)."""
        x = x0.clone().requires_grad_(True)
        # the gradient's buffer made once, outside the evaluations' heap (see reuse_memory):
        # zeroed in place, not reallocated, so no long-lived block splits the heap's free space
        x.grad = torch.zeros_like(x)
        optimizer = self.settings.optimizer_for(iters)
        if optimizer == "lbfgs":
            # an "iteration" is one loss evaluation (forward + backward), the unit of cost; the
            # strong-Wolfe line search makes the first steps useful, which matters at fine
            # levels that get only a few evaluations per tile
            opt = torch.optim.LBFGS([x], lr=1.0, max_iter=iters, max_eval=iters, history_size=10,
                                    tolerance_grad=-1.0, tolerance_change=-1.0, line_search_fn="strong_wolfe")
        else:
            opt = Adam(x, lr=self.settings.lr)  # (torch.optim's, to the bit, without its 2 s import)

        def closure():
            t = time.perf_counter()
            opt.zero_grad(set_to_none=False)
            with reuse_memory(give_back=False) if reuse else contextlib.nullcontext():
                loss = objective(x0 + (x - x0) * mask)
                loss.backward()
            report(time.perf_counter() - t, float(loss.detach()), iters)
            return loss

        try:
            if iters > 0 and optimizer == "lbfgs":
                opt.step(closure)
            elif iters > 0:
                for _ in range(iters):
                    closure()
                    opt.step()
                    with torch.no_grad():
                        x.clamp_(0.0, 1.0)
        finally:
            give_back_memory()
        with torch.no_grad():
            out = (x0 + (x - x0) * mask).clamp_(0.0, 1.0)
        if not bool(torch.isfinite(out).all()):  # (a step after the last evaluation can still overflow)
            report.not_finite("the pixels")
        return out
