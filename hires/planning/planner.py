"""The memory and time plan of a render: tile size per level from the budget (hires.planning.memory),
and estimates.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from hires.core.config import Settings, parse_memory
from hires.core.errors import BudgetError
from hires.core.layers import flops_per_pixel
from hires.engine.pyramid import Level, schedule
from hires.engine.tiles import ALIGN, Tile, cut_fractions, grid, stagger
from hires.planning.memory import CANVAS_BYTES_PER_PX, FIXED_BYTES, tile_bytes

# ---------------------------------------------------------------- the planner

# time of a mapped evaluation over a reused one (hires.planning.memory.REUSE_FACTOR): the page faults on first touch of fresh blocks
# (measured 14.7 s vs 8.6-9.6 s for that tile; 1.56 vs 1.16 s per 1024 px evaluation)
MAPPED_COST = 1.5
MAX_TILE = 1024
HEADROOM = 0.9                   # plan to 90% of --memory: allocator slack and libvips' own buffers


def auto_margin(level: Level) -> int:
    """Context px around a tile: the receptive radius of the deepest layer used, so every owned
    activation of a tile is exactly the whole image's (the padding inside a tile never reaches it)."""
    return -(-level.radius // ALIGN) * ALIGN


def auto_overlap(level: Level) -> int:
    """Feathered px on each side of a cut.  Twice the stride of the deepest layer at relu3_1 and
    shallower (a ramp narrower than one position of that layer's map is a hard cut to it; wider
    ramps blend two tiles' different texture over more pixels, which softens the cut: 0.90 of
    the usual gradient along 16 px ramps at relu3_1, 0.98 along 8 px).  From relu4_1 on, the
    context margin, the deepest layer's receptive radius: a tile's pixels within that reach of
    its fixed context are pulled off the texture, a band darker along one side of a cut and
    lighter along the other, and a ramp as wide as that reach gives them little weight in the
    blend.  Measured on a 1024 px texture (a relu4_1 level): 16 px left a band 4.8
    standard deviations of the row-mean wobble (``seams.soft_band``), 48 px none (2.95, as along
    any line)."""
    stride = level.stride
    return auto_margin(level) if stride >= 8 else 2 * stride


@dataclass
class LevelPlan:
    level: Level
    tile: int
    margin: int
    overlap: int               # feathered px on each side of a cut
    passes: list[list[Tile]]   # the tile grid of each refine pass (a second pass is shifted by half a tile)
    peak_bytes: float
    flop: float          # network FLOPs of the refine passes, statistics passes included
    disk: bool = False   # full-size buffers are disk-backed memmaps
    shift: int = 0       # the first pass's grid is shifted by this many px (a seamless level, tiles.stagger)
    reuse: bool = True   # evaluations reuse freed memory (faster, larger peak; canvas.reuse_memory)
    optimizer: str = "lbfgs"
    style_px: int = 0    # px of the style images at the level's scale (their statistics pass)
    paint: tuple = ()    # sizes of the multi-scale fast start's stages, painted when this level starts
    # px the level's start resamples with libvips: (written by upsampling: the coarser level's result
    # at this size, the painting's detail brought back; read by downsampling: the multi-scale painting
    # to this size and to the coarser one).  Not FLOP, and no tile's: at 3000 and 6000 px 3.6 and
    # 6.9 s of a print's levels, 6% and 3% of their time, that the tiles' costs missed
    resample: tuple[int, int] = (0, 0)
    patch: bool = False  # a texture's patch start is laid out at this level (hires.engine.patchstart)

    @property
    def tiles(self) -> list[Tile]:
        """The first pass's grid."""
        return self.passes[0]

    @property
    def forward_gflop(self) -> float:
        """GFLOP of one forward pass over every tile region of every pass (``flop`` counts
        2 + 2 x iterations of them: the statistics and content forwards, and each evaluation)."""
        return self.flop / 1e9 / (2 + 2 * self.level.iterations)

    @property
    def region_shapes(self) -> set[tuple[int, int]]:
        """The distinct (h, w) of the tile regions (context included) of every pass."""
        return {t.shape for tiles in self.passes for t in tiles}

    @property
    def shapes(self) -> int:
        """Distinct tile region shapes of the level."""
        return len(self.region_shapes)

    @property
    def shapes_gflop(self) -> float:
        """GFLOP of one forward pass over one tile of each distinct region shape of the level (each
        shape's first tile pays a set-up: probe.SHAPE_EVALS)."""
        return flops_per_pixel(self.level.layers) * sum(h * w for h, w in self.region_shapes) / 1e9

    @property
    def largest_region(self) -> tuple[int, int]:
        """(h, w) of the largest tile region (context included) of any pass."""
        return max(self.region_shapes, key=lambda hw: hw[0] * hw[1])

    @property
    def time_factor(self) -> float:
        """Time per planned FLOP relative to evaluations that reuse memory."""
        return 1.0 if self.reuse else MAPPED_COST

    @property
    def cost(self) -> float:
        """What the planner minimises per FLOP: the time, with disk buffers taken only when they save
        5% (DISK_GAIN; in time they cost next to nothing where the page cache holds them: the 2 GiB
        print's disk-backed level took 365 s against 370 estimated without a penalty, and another
        22.3 s per planned TFLOP against 22.2-23.8 for the same level with RAM buffers)."""
        return self.time_factor / (DISK_GAIN if self.disk else 1.0)

    def as_dict(self) -> dict:
        return {"level": self.level.index, "width": self.level.width, "height": self.level.height,
                "iterations": self.level.iterations, "style_layers": list(self.level.style_layers),
                "content_layer": self.level.content_layer, "tile": self.tile, "margin": self.margin,
                "overlap": self.overlap, "shift": self.shift,
                "tiles": len(self.tiles), "passes": len(self.passes), "peak_bytes": int(self.peak_bytes),
                "gflop": self.flop / 1e9, "canvas": "disk" if self.disk else "ram", "reuse_memory": self.reuse,
                "optimizer": self.optimizer, "paint_stages": [list(wh) for wh in self.paint],
                "patch_start": self.patch}


@dataclass
class Plan:
    width: int
    height: int
    budget: int
    levels: list[LevelPlan]
    # this machine's TileCost of each optimised level, by level index; see hires.planning.probe
    costs: dict | None = None
    notes: list[str] = field(default_factory=list)   # advice shown with the plan
    network: str = "hybrid"                           # the feature network the levels' layers belong to
    paint_rate: float | None = None                   # seconds per px of an untiled fast-network pass
    # seconds per px written by libvips' upsampling and per px read by its downsampling (resample_rates)
    resample_rates: tuple[float, float] | None = None

    def describe(self) -> list[str]:
        """The lines ``hires plan`` prints."""
        return describe(self)

    @property
    def peak_bytes(self) -> float:
        return max(lp.peak_bytes for lp in self.levels)

    @property
    def flop(self) -> float:
        return sum(lp.flop for lp in self.levels)

    @property
    def eval_px(self) -> float:
        """Pixels the network is evaluated on (each tile region, per evaluation and its two set-up
        forwards, every pass), a measure of time that FLOP misses: the hybrid network's MobileNetV2
        layers are few FLOP per pixel but memory-bound, so a 14-minute print was 17.5 TFLOP."""
        return sum((2 + lp.level.iterations) * t.shape[0] * t.shape[1]
                   for lp in self.levels if lp.flop for tiles in lp.passes for t in tiles)

    @property
    def long(self) -> bool:
        """Worth the few seconds of a time estimate: about five minutes or more on 2 cores."""
        return self.flop > LONG_RENDER_FLOP or self.eval_px > LONG_RENDER_EVAL_PX

    def worker_bytes(self, settings: Settings) -> int:
        """Memory a cluster worker needs to refine the largest tile of any level: the process's
        fixed part plus one tile's network and optimiser state (no canvas: the driver holds it)."""
        return int(FIXED_BYTES + max([tile_bytes(max(t.shape[0] * t.shape[1] for t in lp.tiles), lp.level,
                                                 settings.optimizer_for(lp.level.iterations), reuse=lp.reuse)
                                      for lp in self.levels if lp.tiles and not lp.level.fast] or [0]))

    def level_seconds(self, lp: LevelPlan) -> float | None:
        if self.costs is None:
            return None
        if not lp.flop:
            return self.patch_seconds(lp)
        return sum(self.parts(lp).values())

    def parts(self, lp: LevelPlan) -> dict[str, float]:
        """The level's time in parts: its tiles' (probe.TileCost.parts), the multi-scale start's when it
        paints it, and the resampling that starts it."""
        return {**self.costs[lp.level.index].parts(lp), "paint": self.paint_seconds(lp),
                "resample": self.resample_seconds(lp)}

    @staticmethod
    def patch_seconds(lp: LevelPlan) -> float:
        """The patch start's time, when ``lp`` lays it out (hires.engine.patchstart.seconds)."""
        from hires.engine import patchstart
        return patchstart.seconds(lp.level.width, lp.level.height) if lp.patch else 0.0

    def resample_seconds(self, lp: LevelPlan) -> float:
        """The resampling of the level's start (LevelPlan.resample) at this machine's rates."""
        if self.resample_rates is None:
            return 0.0
        return sum(px * rate for px, rate in zip(lp.resample, self.resample_rates))

    def paint_seconds(self, lp: LevelPlan) -> float:
        """The multi-scale start's time, when ``lp`` paints it (fast.stage_seconds)."""
        from hires.fast import fast
        if not lp.paint or self.paint_rate is None:
            return 0.0
        return sum(fast.stage_seconds(w, h, self.budget, self.paint_rate) for w, h in lp.paint)


    @property
    def est_seconds(self) -> float | None:
        return None if self.costs is None else sum(self.level_seconds(lp) for lp in self.levels)

    def as_dict(self) -> dict:
        return {"network": self.network, "width": self.width, "height": self.height,
                "memory_budget_bytes": self.budget,
                "peak_bytes": int(self.peak_bytes), "gflop": self.flop / 1e9,
                "est_seconds": self.est_seconds, "notes": self.notes,
                "levels": [dict(lp.as_dict(), est_seconds=self.level_seconds(lp),
                                est_paint_seconds=self.paint_seconds(lp) if self.paint_rate else None,
                                est_parts=self.parts(lp) if self.costs and lp.level.index in self.costs else None)
                           for lp in self.levels]}


LONG_RENDER_FLOP = 20e12      # about five minutes of VGG layers on 2 cores
LONG_RENDER_EVAL_PX = 200e6   # about five minutes of the hybrid's fine layers (relu1_1, mb3) on 2 cores

# disk-backed buffers only when they cut the level's work by 5% or more: a margin for disks and page
# caches slower than this machine's, where they measured no slower per FLOP than RAM (docs/archive/measurements.md)
DISK_GAIN = 0.95


def plan_level(level: Level, settings: Settings, budget: int, style_px: int, mask_bytes: int = 0) -> LevelPlan:
    """The tile size for one level, and where its memory comes from.  Every placement that fits is
    planned and the cheapest in time wins: full-size buffers in RAM or on disk (``--canvas auto``;
    RAM buffers leave less of the budget to tiles, so at a tight budget the tiles shrink until their
    context margins cost more than reading the canvas back from disk), and evaluations that reuse
    freed memory (1.5x faster, REUSE_FACTOR more memory per tile) or map it afresh (smaller tiles fit)."""
    s = settings
    placements = [(s.canvas == "disk", r) for r in (True, False)] if s.canvas != "auto" else \
        [(d, r) for d in (False, True) for r in (True, False)]
    plans, error = [], None
    for disk, reuse in placements:
        try:
            plans.append(_fit(level, s, budget, style_px, disk, reuse, mask_bytes))
        except BudgetError as e:
            error = e  # the last placement tried needs the least memory: its figure is the one to quote
    if not plans:
        raise error
    return min(plans, key=lambda lp: lp.flop * lp.cost)


def _fit(level: Level, s: Settings, budget: int, style_px: int, disk: bool, reuse: bool = True,
         mask_bytes: int = 0) -> LevelPlan:
    budget = int(budget * HEADROOM)
    margin = s.margin or auto_margin(level)
    overlap = s.overlap or auto_overlap(level)
    W, H = level.width, level.height
    # disk-backed buffers are released after every tile: only the tile's own pages stay resident
    # (the style regions' maps stay in RAM: one byte a px each)
    base = FIXED_BYTES + mask_bytes * W * H + (0 if disk else CANVAS_BYTES_PER_PX * W * H + 12 * style_px)
    optimizer = s.optimizer_for(level.iterations)
    whole = tile_bytes(W * H, level, optimizer, disk, reuse)

    def largest(tiles):
        return max(t.shape[0] * t.shape[1] for t in tiles)

    if level.fast or not level.iterations:
        # the feed-forward network's result, resampled, or a start kept as it is: nothing is
        # optimised (the network tiles itself inside the budget: fast.tiling)
        tiles = grid(W, H, max(W, H), overlap, margin, s.seamless)
        return LevelPlan(level, max(W, H), margin, overlap, [tiles], base, 0.0, disk, reuse=reuse, optimizer=optimizer)
    if s.tile_size:
        tile = s.tile_size
    elif base + whole <= budget and max(W, H) <= 2 * MAX_TILE:
        tile = max(W, H)  # the whole frame in one piece: no tiling cost
    else:
        tile = 0
        for t in range(MAX_TILE, 63, -ALIGN):
            # the grid's real regions (context, alignment, folded end slivers), not a formula
            if base + tile_bytes(largest(grid(W, H, t, overlap, margin, s.seamless)), level,
                                 optimizer, disk, reuse) <= budget:
                tile = t
                break
        if not tile:
            need = base + tile_bytes(largest(grid(W, H, 64, overlap, margin, s.seamless)), level, optimizer,
                                     disk, reuse)
            raise BudgetError(f"--memory: {s.memory} is too small for a {W}x{H} level; it needs about "
                              f"{need / 2**30:.2f} GiB even with 64 px tiles; raise --memory or lower --size")
    passes = [grid(W, H, tile, overlap, margin, s.seamless)]
    if s.second_pass and len(passes[0]) > 1:
        passes.append(grid(W, H, tile, overlap, margin, s.seamless, shift=tile // 2))
    fpp = flops_per_pixel(level.layers)
    # per pass: one statistics forward, one content forward, iterations x (forward + backward ~ 2x)
    flop = sum(sum(t.shape[0] * t.shape[1] for t in tiles) for tiles in passes) * fpp * (2 + 2 * level.iterations)
    peak = base + max(tile_bytes(largest(tiles), level, optimizer, disk, reuse) for tiles in passes)
    return LevelPlan(level, tile, margin, overlap, passes, peak, flop, disk, reuse=reuse, optimizer=optimizer,
                     style_px=style_px)


def _staggered(lp: LevelPlan, coarser: list[LevelPlan]) -> LevelPlan:
    """``lp`` with its wrapped grids shifted so that its cuts fall away from the coarser levels'
    (``tiles.stagger``); the tiles' shapes, and so the level's memory and work, stay the same."""
    W, H = lp.level.width, lp.level.height
    earlier: tuple[list[float], list[float]] = ([], [])
    for c in coarser:
        for tiles in c.passes:
            rows, cols = cut_fractions(tiles, c.level.width, c.level.height)
            earlier[0].extend(rows)
            earlier[1].extend(cols)
    shift = stagger(W, H, lp.tile, earlier)
    passes = [grid(W, H, lp.tile, lp.overlap, lp.margin, True, shift=shift + i * (lp.tile // 2))
              for i in range(len(lp.passes))]
    return replace(lp, passes=passes, shift=shift)


def make_plan(width: int, height: int, settings: Settings, style_sizes: list[tuple[int, int]] = (),
              mask_bytes: int = 0) -> Plan:
    """Plan every level of a ``width`` x ``height`` render within ``settings.memory``; ``mask_bytes``:
    what the style regions hold per px of a level (hires.rendering.request.mask_bytes_per_px)."""
    from hires.engine.nets import resolve_network
    budget = parse_memory(settings.memory)
    network = resolve_network(settings.network, settings.weights)
    levels = []
    for lv in schedule(width, height, settings, network):
        f = max(lv.width, lv.height) / max(width, height)
        style_px = int(sum(sw * sh * f * f for sw, sh in style_sizes))
        lp = plan_level(lv, settings, budget, style_px, mask_bytes)
        levels.append(_staggered(lp, levels) if settings.seamless else lp)
    above = [i for i, lp in enumerate(levels) if i and levels[i - 1].level.fast and not lp.level.fast]
    if settings.multiscale and above:  # the first optimised level above the fast start paints the multi-scale start
        from hires.fast.fast import stage_sizes
        levels[above[0]] = replace(levels[above[0]], paint=tuple(stage_sizes(width, height, settings.fast_size)))
    painted = settings.multiscale and bool(above)
    for i, lp in enumerate(levels):
        if i and not lp.level.fast:
            levels[i] = replace(lp, resample=_resampled(lp.level, painted and i >= above[0], width * height))
    plan = Plan(width, height, budget, levels, network=network)
    return plan


def _resampled(level: Level, painted: bool, out_px: int) -> tuple[int, int]:
    """LevelPlan.resample of an optimised level after the first (pipeline.level_start): the coarser
    result upsampled to it; above the fast start with the multi-scale painting (``painted``, made at
    the output size, ``out_px``), that painting downsampled to the level and to the coarser level,
    the latter upsampled back (pipeline.painted_content)."""
    px = level.width * level.height
    return (2 * px, 2 * out_px) if painted else (px, 0)


def describe(plan: Plan) -> list[str]:
    """Human-readable lines of a plan (the CLI prints them)."""
    lines = [f"target {plan.width}x{plan.height}, {plan.network} network, memory budget {plan.budget / 2**30:.2f} GiB, "
             f"estimated peak {plan.peak_bytes / 2**30:.2f} GiB"]
    for lp in plan.levels:
        lv = lp.level
        if lv.fast:
            lines.append(f"  level {lv.index}: {lv.width}x{lv.height}, the fast network's stylisation, resampled")
            continue
        if not lv.iterations:
            lines.append(f"  level {lv.index}: {lv.width}x{lv.height}, "
                         + (f"the examples' patches laid out (patch start, about {plan.patch_seconds(lp):.0f} s)"
                            if lp.patch else "its start, not optimised"))
            continue
        lines.append(f"  level {lv.index}: {lv.width}x{lv.height}, {len(lp.tiles)} tile(s) of {lp.tile} px "
                     f"(+{lp.margin} px context), {lv.iterations} iterations, layers {','.join(lv.layers)}, "
                     f"{lp.flop / 1e12:.2f} TFLOP, peak {lp.peak_bytes / 2**30:.2f} GiB"
                     + (", buffers on disk" if lp.disk else "")
                     + (f", after the multi-scale start ({' then '.join(f'{w}x{h}' for w, h in lp.paint)}"
                        + (f", about {plan.paint_seconds(lp) / 60:.1f} min" if plan.paint_rate else "") + ")"
                        if lp.paint else "")
                     + (f", about {plan.level_seconds(lp) / 60:.1f} min" if plan.costs else ""))
    if plan.est_seconds is not None:
        lines.append(f"estimated time {plan.est_seconds / 60:.1f} min on this machine")
    return lines + [f"note: {n}" for n in plan.notes]
