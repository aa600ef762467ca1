"""The planner's speed measurement on this machine: a tile refined by the engine itself, per level
depth, optimiser, precision and tile shape (cached per machine in ``hires.planning.costcache``), and the fast
network's rate when a level paints the multi-scale start.  It uses the engine and feeds the plan
(``calibrate``); the plan itself imports no engine.
"""
from __future__ import annotations

import time
from dataclasses import astuple, dataclass, replace

from hires.core.config import Settings
from hires.core.layers import flops_per_pixel
from hires.planning.planner import LevelPlan, Plan
from hires.engine.pyramid import Level
from hires.engine.tiles import Tile, grid


# the set-up a level's first tile of each region shape pays (oneDNN's primitives for the shape, the
# first touch of its memory), in evaluations of that tile.  Timed in a print's tiles (pipeline
# events, three runs): a level's first tile spent 2-4 s more than the next of its shape (4-6 of its
# evaluations), a later new shape 0-3 s (0.3-0.9 s at 6000 px, 0.8-3 s at 3000 px), a repeated
# one none.  The probe's own reading of it (its first tile beyond a warm one, 0.4-2.8 s in the same
# process and shapes) moved the print's 1500 px estimate by 20 s from run to run; the evaluations
# of the shape it adds up to hold the level's figure where the runs put it
SHAPE_EVALS = 2


@dataclass(frozen=True)
class TileCost:
    """This machine's cost of a tile at one level (its layers, optimiser, precision and tile size),
    in seconds per GFLOP of the tile region's forward pass: ``fixed`` once per tile (its statistics
    and content forwards with their Gram sums, the loss's set-up, the blend) and ``per_eval`` for
    each evaluation (forward, backward to the pixels, the optimiser's step); and in seconds whatever
    the tile's size: ``tile_s`` once per tile and ``eval_s`` per evaluation (Python's and the
    libraries' calls, the Gram-sized terms of the loss).  A 292x912 tile of the print cost 7.5 s per
    Mpx where a 912x912 one cost 6.5; priced by its pixels alone, the 3000 px level of the 2 GiB
    print (30 tiles, 170-592 px) read 17% under its time."""
    fixed: float
    per_eval: float
    tile_s: float = 0.0
    eval_s: float = 0.0

    def level_seconds(self, lp: LevelPlan) -> float:
        """The level's time: the sum of its ``parts``."""
        return sum(self.parts(lp).values())

    def parts(self, lp: LevelPlan) -> dict[str, float]:
        """The level's time in parts: each tile's fixed part and evaluations (mapped afresh, slower:
        see MAPPED_COST), the set-up of each tile shape (SHAPE_EVALS), and the style images'
        statistics pass, one forward (half a tile's fixed part)."""
        f, n = lp.time_factor, lp.level.iterations
        tiles = sum(len(t) for t in lp.passes)
        return {"tiles": lp.forward_gflop * (self.fixed + n * self.per_eval * f) + tiles * (self.tile_s + n * self.eval_s * f),
                "shapes": SHAPE_EVALS * f * (self.per_eval * lp.shapes_gflop + self.eval_s * lp.shapes),
                "style": lp.style_px * flops_per_pixel(lp.level.layers) / 1e9 * self.fixed / 2}


def calibrate(plan: Plan, settings: Settings) -> Plan:
    """Time this machine at each network depth of ``plan`` (measure_costs), libvips' resampling
    when a level starts by resampling (resample_rates), and the fast network when a level paints
    the multi-scale start; returns the plan, its estimates filled in."""
    plan.costs = measure_costs(settings, plan.levels)
    if any(any(lp.resample) for lp in plan.levels):
        plan.resample_rates = resample_rates()
    if any(lp.paint for lp in plan.levels):
        from hires.fast import fast
        from hires.core.device import pick_device
        plan.paint_rate = fast.measure_rate(pick_device(settings.device))
    return plan


# evaluations of the probe's timed run: half the level's own count, at most half the upper bound and
# at least the lower (the tile a level runs, its optimiser's steps as the level has them); a first
# run of the lower bound meets the shape new, so that the timed one is warm
PROBE_EVALS = (6, 20)

# pixels of the probe's tile at most.  The seconds per GFLOP are those of the level's own tiles from
# about 512 px a side, where the activations no longer fit the cache (a 384 px probe ran faster per
# FLOP than the 500-900 px tiles of a 6000x4500 print), and they change no more than this machine's
# noise from 512 to 960 px (benchmarks/probe_size.py); a probe at 640 px, not 960, halves a cold plan's
# time, and a fixed per-tile part still weighs as it does in the level (it scales with the FLOP)
PROBE_PX = 640 * 640


class _Probe:
    """One tile refined by the engine, as a render refines it, and timed.  Its style targets come
    from an image half its size, so that its first run meets its shape new, as a render's first
    tile of each shape does, statistics pass included.  With the level's ``overlap`` and ``margin``
    the tile is a grid's corner tile: feathered ramps and fixed context on two sides, whose
    weighted Gram and content terms cost as the level's do (a 640 px tile of the print's 1500 px
    level, 48 px of each: its median evaluation 0.282 s against 0.256 s as a whole image, five
    alternating runs), where the tile leaves room for them."""

    def __init__(self, engine, level: Level, h: int, w: int, rng, overlap: int = 0, margin: int = 0):
        import numpy as np

        from hires.engine.stats import make_target
        self.engine = engine
        self.image = rng.random((h, w, 3), dtype=np.float32)
        self.level = Level(0, w, h, 1, level.style_layers, level.content_layer)
        cy, cx = h - overlap - margin, w - overlap - margin
        self.tiles = grid(w, h, max(w, h), 0, 0) if min(cy, cx) < overlap + margin or not overlap else \
            [Tile(0, (0, cy, 0, cx), (0, cy + overlap, 0, cx + overlap), (0, h, 0, w), (0, 2 * overlap, 0, 2 * overlap))]
        # (sides in multiples of 32: with a 40 px side a padded map deep in MobileNetV2 came out
        # narrower than its padding)
        small = self.image[: max(h // 64 * 32, 32), : max(w // 64 * 32, 32)]
        stats = engine.stats_pass(small, self.level.layers,
                                  grid(small.shape[1], small.shape[0], max(small.shape[:2]), 0, 0))
        self.targets = {n: make_target(*st.gram_mean(), engine.device) for n, st in stats.items()}

    def run(self, evals: int) -> tuple[float, list[float]]:
        """Seconds to refine the tile with ``evals`` evaluations, and each evaluation's seconds."""
        from hires.core.canvas import Buffers
        from hires.engine.passes import PassContext, refine_pass
        from hires.engine.reports import Counters
        counters = Counters()
        t = time.perf_counter()
        refine_pass(self.engine, self.image.copy(), self.image, self.targets, replace(self.level, iterations=evals),
                    self.tiles, PassContext(Buffers(None, False), counters))
        return time.perf_counter() - t, counters.evals


def measure_costs(settings: Settings, levels: list[LevelPlan], max_px: int = PROBE_PX,
                  bounds: tuple[int, int] | None = None) -> dict[int, TileCost]:
    """The TileCost of each optimised level of ``levels`` (by level index), timed on this machine
    with the engine itself, so losses, optimiser, statistics and blending are in the figure, not only
    the convolutions.  The probe refines a tile shaped like the level's largest tile region, with
    its layers, optimiser and precision, scaled down to at most ``max_px`` pixels (probe_shape).
    A tile's time has a fixed part (its statistics and content forwards, the loss's set-up) that
    weighs more at 10 evaluations a tile than at 150; a warm run separates it from the evaluations
    by their own clock (_measure).  ``bounds``: the probe's evaluations at least and at most
    (PROBE_EVALS; tests take fewer).
    About 3-8 s a level."""
    import numpy as np

    from hires.core import process
    from hires.planning import costcache
    from hires.engine.engine import Engine
    process.tune_for_rendering()  # the probe measures the process as a render runs it
    cached, found = costcache.load(), {}
    # the hybrid network computes every layer (VGG19's as the random one does, at the same cost)
    engine = Engine(settings.replace(network="hybrid", seamless=False, second_pass=False))
    rng = np.random.default_rng(0)
    # what the first refine of a process pays once (libraries' own set-up), paid here
    warmed = False
    out, probed = {}, {}
    low, high = bounds or PROBE_EVALS
    for lp in levels:
        if not lp.flop:  # a fast level optimises nothing: no probe
            continue
        lv = lp.level
        engine.use_settings(settings.replace(optimizer=lp.optimizer))  # the level's own optimiser, not the probe's
        precision = engine.use_level(lv)                       # and its arithmetic
        region = _probe_region(lp, levels)
        evals = max(min(lv.iterations, high) // 2, low)
        alike = (lv.layers, lp.optimizer, precision, region, evals, lp.overlap, lp.margin)
        if alike in probed:
            out[lv.index] = probed[alike]
            continue
        entry = costcache.key(",".join(lv.layers), lp.optimizer, precision, settings.pooling, f"{region[1]}x{region[0]}",
                              f"{evals} evaluations", f"ramps {lp.overlap} px, context {lp.margin} px")
        if entry in cached:  # measured before on this machine: the plan answers at once
            out[lv.index] = probed[alike] = TileCost(*cached[entry])
            continue
        if not warmed:
            _Probe(engine, Level(0, 64, 64, 1, ("relu1_1",), "relu1_1"), 64, 64, rng).run(2)
            warmed = True
        h, w = probe_shape(region, max_px)
        fpp = flops_per_pixel(lv.layers) / 1e9
        large = h * w * fpp, _measure(_Probe(engine, lv, h, w, rng, lp.overlap, lp.margin), evals, low)
        if h * w >= 4 * SMALL_SIDE ** 2:
            small = SMALL_SIDE ** 2 * fpp, _measure(_Probe(engine, lv, SMALL_SIDE, SMALL_SIDE, rng), evals, low)
        else:  # (a probe this small is all a test needs: its costs in proportion to its pixels)
            small = 0.0, (0.0, 0.0)
        out[lv.index] = probed[alike] = _fit(large, small)
        found[entry] = astuple(out[lv.index])
    if found:
        costcache.save(found)
    return out


def probe_shape(region: tuple[int, int], max_px: int = PROBE_PX) -> tuple[int, int]:
    """(h, w) of the probe for a tile ``region`` (h, w): the region itself, or scaled to ``max_px``
    pixels with its proportions (sides in multiples of 16, at least 32)."""
    h, w = region
    scale = min(1.0, (max_px / (h * w)) ** 0.5)
    if scale == 1.0:
        return h, w
    return tuple(max(32, int(n * scale) // 16 * 16) for n in (h, w))


def _probe_region(lp: LevelPlan, levels: list[LevelPlan]) -> tuple[int, int]:
    """The tile region a level is probed at: its largest, or that of the level with the most work
    among those with its layers and optimiser whose regions are within SHARED_SHAPE of its own in
    px (a print's last two levels at 4 GiB, 912 and 816 px): one probe less, seconds sooner."""
    def px(o):
        return o.largest_region[0] * o.largest_region[1]

    alike = [o for o in levels if o.flop and o.level.layers == lp.level.layers and o.optimizer == lp.optimizer
             and SHARED_SHAPE <= px(o) / px(lp) <= 1 / SHARED_SHAPE]
    return max(alike, key=lambda o: o.flop).largest_region


SHARED_SHAPE = 0.7


def _measure(probe: _Probe, evals: int = PROBE_EVALS[0], least: int = PROBE_EVALS[0]) -> tuple[float, float]:
    """The probe's seconds per tile beyond its evaluations, and per warm evaluation.  A first run
    of ``least`` evaluations meets the shape new (its set-up, priced apart: plan.SHAPE_EVALS); a
    second, warm run of ``evals`` is timed by its own clock: the median of its evaluations after
    the first is a warm evaluation's time, its time outside them with the first evaluation's extra
    over the median the per-tile part.  (The mean of eight evaluations read one shape 0.208-0.309 s
    in six runs of one process, a page-fault or a neighbour's burst in one or two of them; their
    median 0.203-0.209; the print's levels read their mean evaluation 0.92-1.04 of their median,
    so the median stands for the mean as it is.)"""
    import statistics
    _, first = probe.run(least)
    total, times = probe.run(evals)
    warm = statistics.median(times[1:]) if len(times) > 1 else total
    if len(first) > 2 + SHAPE_EVALS:
        # the first run's evaluations after its set-up read the same thing: the faster of two
        # readings seconds apart (the machine is shared: slowness only ever adds, and one reading
        # in a slow moment set two levels' estimates 20-35% over their time in one print of five)
        warm = min(warm, statistics.median(first[SHAPE_EVALS:]))  # (after the ones its set-up slows)
    return max(total - sum(times), 0.0) + max(times[0] - warm, 0.0), warm


# px a side of the second, small probe: its tile and evaluations are almost all the part of their
# seconds that their pixels do not set (the two probes' line, _fit)
SMALL_SIDE = 64


def _fit(large: tuple[float, tuple[float, float]], small: tuple[float, tuple[float, float]]) -> TileCost:
    """The TileCost through two probes, each (its forward GFLOP, _measure's seconds): per GFLOP the
    slope between them, per tile and evaluation what the small one took beyond its GFLOP's share."""
    (g1, (tile1, eval1)), (g0, (tile0, eval0)) = large, small
    fixed, per_eval = max(tile1 - tile0, 0.0) / (g1 - g0), max(eval1 - eval0, 0.0) / (g1 - g0)
    return TileCost(fixed, per_eval, max(tile0 - fixed * g0, 0.0), max(eval0 - per_eval * g0, 0.0))


def resample_rates(side: int = 1024) -> tuple[float, float]:
    """Seconds per px written by upsampling and per px read by downsampling, as a level's start
    resamples its images (``hires.core.io.resize`` 2x up and down, into fresh buffers as there; about
    0.4 s).  Measured 62 and 45 ns/px from 1024 px to 27 Mpx, but 87 ns per px written at
    27 Mpx, the first touch of a 324 MB buffer: a print's levels read 3.3 and 5.8 s from these
    rates for 3.6 and 6.9 s timed."""
    import numpy as np

    from hires.core import io
    small = np.random.default_rng(0).random((side * 3 // 4, side, 3), dtype=np.float32)
    h, w = small.shape[0] * 2, side * 2
    io.resize(small, w, h)  # (libvips' own set-up, paid once)
    t = time.perf_counter()
    large = io.resize(small, w, h)
    up = (time.perf_counter() - t) / (w * h)
    t = time.perf_counter()
    io.resize(large, side, small.shape[0])
    return up, (time.perf_counter() - t) / (w * h)
