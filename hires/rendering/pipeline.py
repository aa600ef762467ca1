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
from pathlib import Path

import numpy as np

from hires.core import colour, io, output, process
from hires.planning import probe
from hires.rendering import lifecycle
from hires.core.canvas import Buffers, path_of, release
from hires.engine.workfolder import WorkFolder
from hires.core.config import Settings
from hires.core.errors import HiresError, OptionError
from hires.core.progress import Done, Failed, LevelStarted, Note, PlanReady, ignore
from hires.engine.engine import Engine
from hires.engine.passes import PassContext, refine_pass
from hires.engine.reports import Counters, LevelReport
from hires.rendering.fastrender import fast_start, run_fast
from hires.rendering.finishing import STRIP, Result, finish, to_gray
from hires.planning.planner import LevelPlan, Plan, describe
from hires.rendering.request import Job, RunOptions, work_key
from hires.rendering.jobplan import output_mode, plan_settled, settle
from hires.rendering.snapshots import Snapshots
from hires.rendering.levelsetup import level_start, level_targets
from hires.rendering.state import RenderState

log = logging.getLogger(__name__)


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


