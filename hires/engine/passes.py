"""A refine pass over a level's tiles: the whole image's statistics first, then each colour's tiles
refined by a ``TileRunner`` (the in-process ``Engine``, one after another, or ``cluster.DaskRunner``,
a colour's tiles at once on workers) and blended into the canvas here, with the pass's checkpoints
(finished tiles saved, those of an interrupted run put back) and its progress events.  The tile's
own work (its statistics, objective and optimisation) is ``hires.engine.engine``'s.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from hires.core.canvas import Buffers, release, trim
from hires.engine.checkpoints import Checkpoints, fingerprint
from hires.engine.colouring import colour_groups
from hires.engine.engine import Engine, RefineJob
from hires.kernels import blend_into
from hires.core.progress import Note, TileFinished, TilesRestored
from hires.engine.pyramid import Level
from hires.engine.reports import Counters
from hires.engine.stats import LayerTarget
from hires.engine.tiles import Tile, blend_window


class TileRunner(Protocol):
    """Something that runs a pass's tiles: the in-process ``Engine`` (one after another) and
    ``hires.engine.cluster.DaskRunner`` (a colour's tiles at once on workers), with the same results.
    Both yield (tile index or tile, result) pairs as tiles finish, in any order."""

    def tile_stats_runs(self, image: np.ndarray, layers, tiles: list[Tile],
                        masks: np.ndarray | None = None) -> Iterator[tuple[int, tuple[dict, float, float]]]:
        """(tile index, (its Gram sums per layer, or per layer and style region of ``masks``, network
        seconds, FLOP)) for each of ``tiles``."""

    def refine_runs(self, canvas: np.ndarray, content: np.ndarray | None, tiles: list[Tile],
                    job: RefineJob, masks: np.ndarray | None = None) -> Iterator[tuple[Tile, np.ndarray]]:
        """(tile, its refined blend area) for each of ``tiles``."""


@dataclass
class PassContext:
    """Where a refine pass gets its buffers and reports to: the work counters, the checkpoints
    that save each finished tile (and put back those an interrupted run finished), and a
    callback after each tile (snapshots)."""
    buffers: Buffers
    counters: Counters
    n_levels: int = 1
    pass_index: int = 0
    checkpoints: Checkpoints | None = None
    after_tile: Callable[[np.ndarray, int, int], None] | None = None  # f(canvas, tiles finished so far, of n)
    executor: TileRunner | None = None      # hires.engine.cluster.DaskRunner: tiles on a cluster
    reuse: bool = True                      # evaluations reuse freed memory (the plan's LevelPlan.reuse)
    masks: np.ndarray | None = None         # the level's style region maps (hires.engine.regions), or None


def refine_pass(engine: Engine, canvas: np.ndarray, content: np.ndarray | None, targets: dict[str, LayerTarget],
                level: Level, tiles: list[Tile], ctx: PassContext) -> np.ndarray:
    """One pass over ``tiles``, updating ``canvas`` (float32 (H, W, 3)) in place; returns it.
    With ``ctx.masks`` (the level's style region maps) each region keeps its own statistics.

    Tiles run a colour at a time (``hires.engine.colouring``): in this process one after another, or
    with ``ctx.executor`` the tiles of a colour at once on a cluster, with the same result.
    ``ctx.buffers`` makes the pass's weight map (RAM or disk); ``ctx.counters`` receives its work."""
    H, W = canvas.shape[:2]
    runner: TileRunner = ctx.executor or engine
    starts: dict = {}
    glob = engine.stats_pass(canvas, level.style_layers, tiles, ctx.counters, ctx.executor, starts, ctx.masks)
    wsum = ctx.buffers.zeros("weights", canvas.shape[:2])
    stats_key = fingerprint(glob)
    colours = colour_groups(tiles, W, H)
    done = set()
    if ctx.checkpoints is not None:
        order = [t for group in colours for t in group]
        restored = ctx.checkpoints.restore_tiles(level.index, ctx.pass_index, order, stats_key, canvas, wsum)
        done = set(restored.tiles)
        if restored.damaged is not None:
            engine.progress(Note(f"tile {restored.damaged + 1} of level {level.index} was damaged in the work folder; "
                                 "it is rendered again"))
    if done:
        engine.progress(TilesRestored(level.index, ctx.pass_index, tuple(sorted(i + 1 for i in done))))
    ctx.counters.work_done += sum(2 * engine.tile_flop(t, level) * level.iterations for t in tiles if t.index in done)
    finished = len(done)
    job = RefineJob(level, glob, targets, (H, W), len(tiles), ctx, starts, ctx.reuse)
    for group in colours:
        todo = [t for t in group if t.index not in done]
        for tile, x_new in runner.refine_runs(canvas, content, todo, job, ctx.masks):
            # Gauss-Seidel on pixels: tiles of later colours read this tile's result as their
            # context and as the start of their overlap, so both sides of a cut converge to the
            # same texture instead of two independent ones whose average would blur the seam.
            blend_into(canvas, wsum, x_new, blend_window(tile), tile.blend[0], tile.blend[2])
            del x_new
            finished += 1
            if ctx.checkpoints is not None:
                ctx.checkpoints.save_tile(level.index, ctx.pass_index, tile, stats_key, canvas, wsum)
            engine.progress(TileFinished(level.index, ctx.pass_index, tile.index + 1, len(tiles)))
            if ctx.after_tile is not None:
                ctx.after_tile(canvas, finished, len(tiles))
            release(canvas, wsum, content)
            trim()
    return canvas
