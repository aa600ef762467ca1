"""A render's run: a job planned, synthesised level by level, finished (the API is ``hires.api``).

``run`` sets a render up (plan, network, work folder, checkpoints) and calls ``run_level`` once
per pyramid level; ``hires.rendering.finishing`` applies the colour option and writes the output.  What the
user asked is resolved in ``hires.rendering.request``; ``--method fast`` runs in ``hires.rendering.fastrender``.
"""
from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hires.core import colour, io, output, process
from hires.engine import detail
from hires.fast import fast, stylecode
from hires.planning import probe
from hires.rendering import lifecycle
from hires.core.canvas import Buffers, path_of, release
from hires.engine.checkpoints import Checkpoints, WorkFolder
from hires.core.config import Settings, parse_memory
from hires.core.errors import HiresError, OptionError
from hires.core.progress import Done, Failed, LevelStarted, Note, PlanReady, ignore
from hires.engine.pyramid import Level
from hires.engine.tiles import grid
from hires.core.device import pick_device
from hires.engine.engine import Engine
from hires.engine.passes import PassContext, refine_pass
from hires.engine.reports import Counters, LevelReport
from hires.rendering.fastrender import fast_start, paint, recolour, run_fast
from hires.fast.hstyle import image_sources
from hires.rendering.finishing import STRIP, Result, finish, to_gray, examples_at
from hires.planning.planner import LevelPlan, Plan, describe
from hires.rendering.request import Job, RunOptions, output_mode, plan_settled, settle, style_size, work_key
from hires.rendering.snapshots import Snapshots
from hires.engine.stats import style_targets

log = logging.getLogger(__name__)


STATS_TILE = 512


@dataclass(kw_only=True)
class RenderState:
    """What every level of one render shares, fixed before the first level runs; a level's canvas
    is handed from level to level (``run_level``), not kept here.  The fast start's two images are
    the one thing levels add: made once, when a level first needs them."""
    job: Job
    settings: Settings
    plan: Plan
    engine: Engine
    counters: Counters          # the render's accounting (hires.engine.reports)
    scratch: Buffers            # records every scratch file of the render, for cleanup
    checkpoints: Checkpoints
    colour_ref: tuple | None    # the content's colour statistics (histogram transfer)
    rng: np.random.Generator
    progress: object
    snapshots: Snapshots | None = None
    executor: object | None = None          # hires.engine.cluster.DaskRunner when tiles run on a cluster
    fast_image: np.ndarray | None = None   # the fast start at its working size, once made
    painted: np.ndarray | None = None      # the multi-scale fast start at the output size, once made


def run(job: Job, settings: Settings, progress=ignore, options: RunOptions | None = None) -> Result:
    """Render ``job``; the progress callback also hears how it ended (a Done or a Failed event)."""
    t0 = time.perf_counter()
    process.tune_for_rendering()
    try:
        result = _run(job, settings, progress, options or RunOptions())
    except HiresError as e:
        progress(Failed(str(e)))
        raise
    except KeyboardInterrupt:
        progress(Failed("interrupted; run the same command again to resume"))
        raise
    progress(Done(str(result.output) if result.output else None, time.perf_counter() - t0))
    return result


def _run(job: Job, settings: Settings, progress, options: RunOptions) -> Result:
    t0 = time.perf_counter()
    if job.output is not None:  # before any work, not after it
        output.check_format(job.output, settings.bit_depth, settings.pyramid)
    lifecycle.check_work_folder(job.output, settings.work_dir)
    if settings.preserve_color != "none" and job.texture:
        raise OptionError("--preserve-color: a texture has no content colours to keep; leave it at none")
    settings = settings.replace(mode=output_mode(job, settings))
    if settings.method == "fast":
        return run_fast(job, settings, progress, options)
    settings = settle(job, settings)   # before the work key is made: the key holds the settings the render uses
    plan = plan_settled(job, settings)
    if plan.levels[-1].disk and job.output is None:
        raise OptionError(f"--memory: a {job.width}x{job.height} result does not fit {settings.memory} in memory; "
                          "give an output path so it can be written from disk, or raise --memory")
    if plan.long:
        probe.calibrate(plan, settings)
    engine = Engine(settings, progress)  # first: bad weights are an error before any plan is shown
    progress(PlanReady(plan.as_dict()))
    for line in describe(plan):  # the plan of memory (and time, for long renders) before it starts
        progress(Note(line))
    key = work_key(job, settings, engine.network_name)
    counters = Counters(work_total=plan.flop)
    with lifecycle.session(job.output, settings.work_dir, key, progress, fresh=options.fresh,
                           keep_work=options.keep_work) as checkpoints:
        scratch, executor = _scratch(checkpoints.folder, plan), None
        try:
            snapshots = _snapshots(job, options, key, progress)
            colour_ref = _colour_ref(job, settings, plan)
            executor = _executor(options.scheduler, plan, settings, progress) if options.scheduler else None
            state = RenderState(job=job, settings=settings, plan=plan, engine=engine, counters=counters,
                                scratch=scratch, checkpoints=checkpoints, colour_ref=colour_ref,
                                rng=np.random.default_rng(settings.seed), progress=progress, snapshots=snapshots,
                                executor=executor)
            canvas, out = _levels(state)
        finally:
            _close(executor)
            scratch.cleanup()
    return Result(canvas, out, engine.network_name, plan, counters.levels, time.perf_counter() - t0, counters.net_s,
                  counters.net_flop / 1e9, cluster=executor.log if executor else None)


def _snapshots(job: Job, options: RunOptions, key: str, progress) -> Snapshots | None:
    if not options.snapshots:
        return None
    stem = job.output.stem if job.output else "render"
    return Snapshots.open(options.snapshots, stem, key, options.snapshot_size, options.snapshot_every, progress)


def _colour_ref(job: Job, settings: Settings, plan: Plan) -> tuple | None:
    """The content's colour statistics for ``--preserve-color histogram``, from the base level, so
    a resumed render gets the same."""
    if settings.preserve_color != "histogram":
        return None
    lv0 = plan.levels[0].level
    return colour.colour_stats(io.load_image(job.content, size=(lv0.width, lv0.height), what="content"))


def _levels(state: RenderState) -> tuple[np.ndarray | None, Path | None]:
    """Every level not yet finished, then the output: (the result in RAM, or None when it is
    disk-backed and the output file is the result; the output path)."""
    job, settings, plan = state.job, state.settings, state.plan
    canvas, start = resume(state)
    # each level takes the coarser result out of this list: once it has resampled it, nothing
    # holds it through the level's tiles (the plan does not count it)
    handed = [canvas]
    del canvas
    for lp in plan.levels[start:]:
        handed = [run_level(state, lp, handed)]
    canvas = handed.pop()
    out = finish(job, settings, canvas, state.scratch.for_level("final", plan.levels[-1].disk),
                 state.checkpoints, state.progress)
    return (None if path_of(canvas) is not None else canvas), out


def _executor(spec, plan: Plan, settings: Settings, progress):
    """A runner for the tiles on a Dask cluster (``spec``: local:N, an address, or an API user's
    own ``distributed.Client``); a local cluster's workers get the memory the plan says one tile
    needs."""
    from hires.engine import cluster
    client = cluster.connect(spec, plan.worker_bytes(settings))
    workers = client.scheduler_info().get("workers", {})
    progress(Note(f"cluster: {client.scheduler.address}, {len(workers)} worker(s); the tiles of a colour run at once"))
    return cluster.DaskRunner(client, settings, owned=client is not spec, progress=progress)


def _close(executor) -> None:
    if executor is not None:
        executor.close()


def _scratch(work: WorkFolder | None, plan: Plan) -> Buffers:
    """Where disk-backed level buffers go: a folder of this process inside the work folder, or a
    new temporary folder when there is none; every file is recorded for cleanup."""
    if work is not None:
        return Buffers(work.path / f"buffers-{os.getpid()}", False)
    if any(lp.disk for lp in plan.levels):
        folder = Path(tempfile.mkdtemp(prefix="hires-"))
        scratch = Buffers(folder, False)
        scratch.folders.append(scratch.folder)
        return scratch
    return Buffers(None, False)


def resume(state: RenderState) -> tuple[np.ndarray | None, int]:
    """The canvas of the last finished level, copied into a buffer of this render (RAM or disk as
    the plan says, and writable), and the index of the level to run next; (None, 0) to start."""
    latest = state.checkpoints.latest()
    if latest is None:
        return None, 0
    index, saved = latest
    lp = state.plan.levels[index] if index < len(state.plan.levels) else None
    if lp is None or saved.shape != (lp.level.height, lp.level.width, 3):
        return _damaged_level(state, index)
    buffers = state.scratch.for_level(f"level{index}", lp.disk)
    canvas = buffers.empty("canvas", saved.shape)
    for y in range(0, saved.shape[0], STRIP):
        canvas[y:y + STRIP] = saved[y:y + STRIP]
        finite = np.isfinite(canvas[y:y + STRIP]).all()
        release(canvas, saved)
        if not finite:
            del saved
            buffers.discard(canvas)
            return _damaged_level(state, index)
    del saved
    state.counters.work_done = sum(p.flop for p in state.plan.levels[:index + 1])
    state.progress(Note(f"resuming after level {index} from {state.checkpoints.folder.path}"))
    return canvas, index + 1


def _damaged_level(state: RenderState, index: int) -> tuple[None, int]:
    """A saved level that is not what hires wrote (another shape, values that are not finite): said
    in one line, and the render starts from the beginning (its tiles' checkpoints are of later
    passes and go with it)."""
    state.progress(Note(f"the saved level {index} in the work folder was damaged; the render starts again "
                        "from the beginning"))
    state.checkpoints.clear()
    return None, 0


def run_level(state: RenderState, lp: LevelPlan, handed: list) -> np.ndarray:
    """One pyramid level: load the content and style statistics at its size, start from the
    coarser level's result (taken out of ``handed``; None for the initial image), refine every
    pass, checkpoint; returns the level's result."""
    canvas = handed.pop()
    lv, s, engine, counters = lp.level, state.settings, state.engine, state.counters
    n_levels = len(state.plan.levels)
    buffers = state.scratch.for_level(f"level{lv.index}", lp.disk)
    tl, net_s0, flop0, paint0 = time.perf_counter(), counters.net_s, counters.net_flop, counters.paint_s
    shape = (lv.height, lv.width, 3)
    if lv.fast:
        state.progress(Note(f"level {lv.index + 1}/{n_levels} {lv.width}x{lv.height}: the fast network's "
                            "stylisation"))
        return _fast_level(state, lp, canvas, buffers)
    state.progress(LevelStarted(lv.index, n_levels, lv.width, lv.height, len(lp.tiles), lv.iterations,
                                lv.style_layers))
    precision = engine.use_level(lv)  # the style statistics, the passes and the workers all alike
    if state.executor is not None:
        state.executor.use_precision(precision)
    content = None
    fast_started = any(p.level.fast for p in state.plan.levels[:lv.index])  # (also after a resume)
    if state.job.content and not fast_started:
        content = io.load_image(state.job.content, size=(lv.width, lv.height), what="content",
                                out=buffers.empty("content", shape))
    targets = level_targets(engine, state.job, s, lp, buffers, state.colour_ref) if lv.iterations else None
    masks = state.job.masks.maps(len(state.job.styles), lv.width, lv.height) if state.job.masks else None
    canvas, content = level_start(state, lv, canvas, content, buffers, fast_started)
    for i, tiles in enumerate(lp.passes if lv.iterations else []):   # (a patch start's level is not optimised)
        after = state.snapshots.tile_done(lv.index, i) if state.snapshots else None
        ctx = PassContext(buffers, counters, n_levels, i, state.checkpoints, after, state.executor, lp.reuse, masks)
        canvas = refine_pass(engine, canvas, content, targets, lv, tiles, ctx)
    del masks
    if s.mode == "gray":  # each level starts the next from gray, so colour cannot build up
        to_gray(canvas)
    state.checkpoints.save(lv.index, canvas)
    if state.snapshots:
        state.snapshots.level_done(canvas, lv.index)
    release(canvas)
    counters.levels.append(LevelReport(
        lv.index, lv.width, lv.height, len(lp.tiles), lv.iterations, time.perf_counter() - tl,
        counters.net_s - net_s0, (counters.net_flop - flop0) / 1e9, counters.paint_s - paint0))
    state.scratch.discard(content)
    return canvas


def level_start(state: RenderState, lv: Level, canvas: np.ndarray | None, content: np.ndarray | None,
                buffers: Buffers, fast_started: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """The level's start (the coarser level's result resampled, a texture's detail noise added, or
    the initial image) and its content target (the photo, or above the fast start the painting)."""
    s, shape = state.settings, (lv.height, lv.width, 3)
    coarser = None
    if canvas is None:
        canvas = initial_canvas(content, lv, s, state.rng, state.job, state.colour_ref)
    else:
        previous, coarser = canvas, canvas.shape[:2]
        canvas = io.resize(previous, lv.width, lv.height, out=buffers.empty("canvas", shape),
                           wrap=state.job.texture and s.seamless)
        state.scratch.discard(previous)
        del previous  # not held through this level's refinement
        if state.job.texture and s.start == "patch":
            # the shapes the patch start laid out are kept as a content target, as a render keeps its
            # photo: from the upsampled start alone the statistics smeared stones back into cells
            content = buffers.empty("content", shape)
            for y in range(0, lv.height, STRIP):
                content[y:y + STRIP] = canvas[y:y + STRIP]
        if state.job.texture and s.detail:
            cov = detail.octave_covariance(*examples_at(state.job, s, lv.width, lv.height))
            detail.add_noise(canvas, cov, s.detail, s.seed, lv.index)
    if fast_started:
        # above the fast start, the content to keep is the painted start, not the photo: pulled
        # toward the photo's features, the refinement washed the painting back out (docs/images/compare_chelsea_starry.jpg)
        content = painted_content(state, canvas, coarser, buffers)
    return canvas, content


def painted_content(state: RenderState, canvas: np.ndarray, coarser: tuple[int, int] | None,
                    buffers: Buffers) -> np.ndarray:
    """The content target of a level above the fast start, and its start: with ``multiscale`` the
    multi-scale painting (fast.cascade, made once at the output size) at the level's size, whose
    detail beyond the coarser level's size (``coarser``: (h, w)) is added to ``canvas``, so the level
    starts from the coarser level's result with the painting's finer strokes; without it, a copy of
    the start."""
    content = buffers.empty("content", canvas.shape)
    if not state.settings.multiscale or coarser is None:
        for y in range(0, canvas.shape[0], STRIP):
            content[y:y + STRIP] = canvas[y:y + STRIP]
            release(content, canvas)
        return content
    if state.painted is None:
        job, s, t = state.job, state.settings, time.perf_counter()
        stylist = stylecode.Stylist(job.styles, job.content, s, recolour(state.colour_ref), pick_device(s.device),
                               job.masks)
        stages = fast.stage_sizes(job.width, job.height, s.fast_size)
        budget = parse_memory(s.memory)
        # held through the levels that use it, which the plan does not count: on disk (its pages
        # handed back after each use) when it is more than a sliver of the budget
        disk = state.scratch.folder is not None and job.width * job.height * 12 > 0.05 * budget
        state.painted, _ = paint(job, s, stylist, stages, state.scratch.for_level("painted", disk), budget,
                                 state.progress)
        state.counters.paint_s += time.perf_counter() - t
    h, w = canvas.shape[:2]
    io.resize(state.painted, w, h, out=content)
    # the painting as the coarser level saw it, resampled back a strip at a time (a full-size copy
    # took the 2 GiB print's last level 1% over its budget)
    for y, rows in io.resized_strips(io.resize(state.painted, coarser[1], coarser[0]), w, h, STRIP):
        n = len(rows)
        canvas[y:y + n] = np.clip(canvas[y:y + n] + content[y:y + n] - rows, 0.0, 1.0)
        release(canvas, content)
    release(state.painted)
    if (h, w) == (state.job.height, state.job.width):  # the last level: not needed again
        state.scratch.discard(state.painted)
        state.painted = None
    return content


def _fast_level(state: RenderState, lp: LevelPlan, canvas, buffers: Buffers) -> np.ndarray:
    """A level covered by the fast start: the feed-forward stylisation (made once, at the working
    size) resampled to the level's size, checkpointed like any level."""
    lv = lp.level
    if state.fast_image is None:
        state.fast_image = fast_start(None, state.job, state.settings, state.colour_ref)
    if canvas is not None:
        state.scratch.discard(canvas)
    canvas = io.resize(state.fast_image, lv.width, lv.height, out=buffers.empty("canvas", (lv.height, lv.width, 3)))
    state.checkpoints.save(lv.index, canvas)
    if state.snapshots:
        state.snapshots.level_done(canvas, lv.index)
    release(canvas)
    state.counters.levels.append(LevelReport(lv.index, lv.width, lv.height, 0, 0))
    return canvas


def level_targets(engine: Engine, job: Job, s: Settings, lp: LevelPlan, buffers: Buffers, colour_ref=None):
    """Style statistics at this level: each style image's (recoloured to ``colour_ref``, the
    content's colour statistics, for histogram transfer), mixed by weight, and with style regions
    each region's (hires.engine.regions)."""
    lv = lp.level

    sources = image_sources(job.styles)  # a fitted style's embedded paintings are its images

    def images():
        for _, path, weight in sources:
            sw, sh = style_size(job, io.image_size(path, "style"), lv.width, lv.height, s)
            # on a disk-backed level the style image is disk-backed too: a style image larger than
            # memory is read tile by tile like the canvas
            img = io.load_image(path, size=(sw, sh), what="style", out=buffers.empty("style", (sh, sw, 3)))
            if colour_ref is not None:
                transform = colour.histogram_transform(colour.colour_stats(img), colour_ref)
                for y in range(0, sh, STRIP):
                    img[y:y + STRIP] = transform(img[y:y + STRIP])
            yield str(path), weight, img
            buffers.discard(img)

    def stats_grid(img):
        # statistics only need a forward pass, so larger tiles than the refine pass's fit; the
        # example itself is not tileable, so its grid never wraps
        return grid(img.shape[1], img.shape[0], max(lp.tile, STATS_TILE), lp.overlap, lp.margin, False)

    groups = ([[k for k, (i, _, _) in enumerate(sources) if i in r.styles] for r in job.masks.regions(len(job.styles))]
              if job.masks else None)
    return style_targets(engine, images(), lv.layers, stats_grid, groups)


def initial_canvas(content, lv: Level, settings: Settings, rng, job: Job, colour_ref=None) -> np.ndarray:
    if content is not None and settings.init == "fast":
        return fast_start(lv, job, settings, colour_ref)
    if content is not None and settings.init == "content":
        return np.array(content)
    if content is not None:
        mean = content.reshape(-1, 3).mean(0)
    elif settings.start == "patch":   # texture: the examples' own patches, laid out at this level
        from hires.engine import patchstart
        images, weights = examples_at(job, settings, lv.width, lv.height)
        start = patchstart.synthesise([np.ascontiguousarray(e[..., :3]) for e in images], weights, lv.width,
                                      lv.height, settings.seamless, settings.seed, settings.variety)
        return colour.to_gray(start) if settings.mode == "gray" else start
    else:  # texture: start from the examples' mean colour
        mean = np.zeros(3, np.float32)
        total = sum(w for _, w in job.styles)
        for path, w in job.styles:
            mean += io.load_image(path, long_side=64, what="example").reshape(-1, 3).mean(0) * (w / total)
    noise = rng.standard_normal((lv.height, lv.width, 3)).astype(np.float32) * 0.15
    start = np.clip(mean[None, None, :] + noise, 0.0, 1.0).astype(np.float32)
    return colour.to_gray(start) if settings.mode == "gray" else start
