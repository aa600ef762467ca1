"""The accounting of a render: what each level cost (``LevelReport``), the network time and work
of the whole render (``Counters``), and what an optimised tile reports after each evaluation: a
loss or pixels that stop being finite stop the render (``TileReport``); in process each
evaluation feeds the ETA counters and a Step event (``TileProgress``), on a cluster worker it is
only counted (``TileCounting``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from hires.core.errors import NumericalError
from hires.core.progress import Step
from hires.engine.pyramid import Level


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
    paint_s: float = 0.0   # of wall_s, the multi-scale fast start this level painted (Plan.paint_seconds)


@dataclass
class Counters:
    """Network time and work of a render, for progress (ETA) and the benchmarks; evaluations are
    added by ``add`` only."""
    net_s: float = 0.0
    net_flop: float = 0.0
    paint_s: float = 0.0
    work_done: float = 0.0
    work_total: float = 1.0
    levels: list[LevelReport] = field(default_factory=list)
    evals: list[float] = field(default_factory=list)  # each evaluation's seconds (the planner's probe reads them)

    def add(self, seconds: float, flop: float, work: float | None = None, each: list[float] = ()) -> None:
        """Network ``seconds`` and ``flop`` done; ``work`` toward the ETA (default: the flop);
        ``each``: the seconds of the single evaluations, when they are known."""
        self.net_s += seconds
        self.net_flop += flop
        self.work_done += flop if work is None else work
        self.evals.extend(each)




class TileReport:
    """What an optimised tile tells after each evaluation (``__call__``) and when its pixels stop
    being finite (``not_finite``): a loss or pixels that are no longer finite stop the render."""

    def __init__(self, level: Level, tile: int, n_tiles: int):
        self.level, self.tile, self.n_tiles = level, tile, n_tiles
        self.evals = 0

    def not_finite(self, what: str) -> None:
        raise NumericalError(
            f"level {self.level.index + 1} ({self.level.width}x{self.level.height}), tile {self.tile}/{self.n_tiles}: "
            f"{what} became infinite or NaN, so nothing was written; the likely cause is a loss weight too large "
            "(--style-weight, --content-weight, --tv-weight, --mean-weight, the style weights) or --lr; lower it")

    def __call__(self, seconds: float, loss: float, iters: int) -> None:
        if not math.isfinite(loss):
            self.not_finite(f"the loss ({loss})")
        self.evals += 1
        self.count(seconds, loss, iters)

    def count(self, seconds: float, loss: float, iters: int) -> None:
        """One finite evaluation (the ``evals``-th)."""


class TileCounting(TileReport):
    """A tile's evaluations counted on a cluster worker (no progress events there)."""

    def __init__(self, level: Level, tile: int, n_tiles: int):
        super().__init__(level, tile, n_tiles)
        self.net_s = 0.0

    def count(self, seconds: float, loss: float, iters: int) -> None:
        self.net_s += seconds


class TileProgress(TileReport):
    """Accounting of one tile's evaluations: counters for the ETA, and a Step event for each."""

    def __init__(self, progress, counters: Counters, level: Level, n_levels: int, tile: int, n_tiles: int,
                 forward_flop: float):
        super().__init__(level, tile, n_tiles)
        self.progress, self.counters, self.n_levels = progress, counters, n_levels
        self.flop = 2 * forward_flop  # forward plus the backward to the input (weights are frozen)

    def count(self, seconds: float, loss: float, iters: int) -> None:
        c = self.counters
        c.add(seconds, self.flop, each=[seconds])
        if self.evals <= iters:
            self.progress(Step(self.level.index, self.n_levels, self.tile, self.n_tiles, self.evals, iters, loss,
                               c.work_done, c.work_total))
