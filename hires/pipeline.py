"""render() and texture(): inputs checked, planned, synthesised level by level, written atomically.

``run`` sets a render up (plan, network, work folder, checkpoints) and calls ``run_level`` once
per pyramid level; ``finish`` applies the colour option and writes the output.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hires import colour, detail, fast, io, lifecycle
from hires.canvas import Buffers, path_of, release, return_memory_promptly
from hires.checkpoints import Checkpoints, WorkFolder
from hires.config import Settings, check_weight, coerce_flag, coerce_value, flag, parse_memory, parse_size, parse_style
from hires.engine import Counters, Engine, LevelReport, PassContext, pick_device
from hires.errors import BudgetError, HiresError, InputError, OptionError
from hires.plan import LevelPlan, Plan, describe, make_plan
from hires.progress import Done, Failed, LevelStarted, Note, PlanReady, Writing, ignore
from hires.pyramid import Level, schedule
from hires.snapshots import Snapshots
from hires.stats import style_targets
from hires.tiles import grid

log = logging.getLogger(__name__)
STATS_TILE = 512
STRIP = 256  # rows per strip when a full-size buffer is processed piecewise


@dataclass
class Result:
    """What a render produced and what it cost."""
    image: np.ndarray | None     # float32 (H, W, 3) in [0, 1]; None when the canvas was disk-backed
    output: Path | None
    network: str
    plan: Plan | None            # None for --method fast
    levels: list[LevelReport]
    wall_s: float
    net_s: float
    net_gflop: float
    fast: fast.FastReport | None = None
    cluster: list[dict] | None = None   # with --scheduler: per statistics pass and colour, what the cluster did


@dataclass
class Job:
    content: Path | None
    styles: list[tuple[Path, float]]
    width: int
    height: int
    output: Path | None
    texture: bool
    overwrite: bool = False      # the output may replace a file at its path (else never, even at the end)


@dataclass
class RunOptions:
    """How a render runs, as opposed to what it makes (Settings): none of these changes the result,
    so none is part of the key that decides whether checkpoints may be resumed."""
    fresh: bool = False              # ignore the checkpoints of an interrupted run
    keep_work: bool = False          # keep the work folder after a successful write
    snapshots: str | None = None     # folder for downscaled previews
    snapshot_size: int = 1024        # their long side in px
    snapshot_every: int = 8          # a preview every this many tiles of a tiled level
    scheduler: object = None         # a Dask cluster for the tiles: local:N, tcp://HOST:PORT or a Client

    def __post_init__(self):  # the API's keywords: checked like every other way in
        checked = run_options_from({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        self.__dict__.update(checked.__dict__)


RUN_FIELDS = {f.name for f in dataclasses.fields(RunOptions)}
_RUN_HINTS = typing.get_type_hints(RunOptions)
RUN_LIMITS = {"snapshot_size": (lambda v: 16 <= v <= 65536, "between 16 and 65536 px"),
              "snapshot_every": (lambda v: 1 <= v <= 1_000_000, "a whole number of tiles, 1 or more")}


def run_options_from(values: dict, prefix: str = "", label=None) -> RunOptions:
    """RunOptions from CLI, TOML or API values, through the same coercion as Settings (real
    booleans only, numbers in range); errors name ``prefix`` (a file and job) and the key (or
    ``label(name)``, a flag)."""
    out = RunOptions.__new__(RunOptions)
    for f in dataclasses.fields(RunOptions):
        value = values.get(f.name, f.default)
        if f.name == "scheduler":  # a spec string, or an API user's own Client (cluster.connect checks it)
            if not (value is None or isinstance(value, str) or hasattr(value, "submit")):
                raise OptionError(f"{prefix}{label(f.name) if label else f.name}: {value!r} is not local:N or a "
                                  "scheduler address such as tcp://host:8786")
        else:
            value = coerce_value(_RUN_HINTS[f.name], value, prefix + (label(f.name) if label else f.name),
                                 check=RUN_LIMITS.get(f.name))
        out.__dict__[f.name] = value
    return out


def split_options(overrides: dict) -> tuple[RunOptions, dict]:
    """API keywords: RunOptions fields, and the rest (Settings fields)."""
    run_kw = {k: overrides.pop(k) for k in list(overrides) if k in RUN_FIELDS}
    return run_options_from(run_kw), overrides


def _styles(style, what: str, optional: bool = False, budget: int | None = None) -> list[tuple[Path, float]]:
    specs = [style] if isinstance(style, (str, Path, tuple)) else list(style or [])
    if not specs and not optional:
        raise OptionError(f"{what}: give at least one image" + ("" if what == "example" else
                          " (or, with --method fast, --builtin-style N)"))
    out = []
    for spec in specs:
        path, weight = spec if isinstance(spec, tuple) else parse_style(str(spec))
        io.check_decodes(path, what, budget)
        out.append((Path(path), check_weight(weight, spec)))
    return out


def make_job(content, style, output, size, texture: bool, overwrite: bool = False, dpi: float = 300.0,
             styles_optional: bool = False, memory: str | int | None = None) -> Job:
    """The inputs checked (each decoded once, small; refused before decoding when its decoder
    would not fit ``memory``), the size resolved, the output path checked."""
    budget = parse_memory(memory) if memory is not None else None
    content_path = None
    if not texture:
        content_path = Path(content)
        cw, ch = io.check_decodes(content_path, "content", budget)
    styles = _styles(style, "example" if texture else "--style", styles_optional, budget)
    if size is None:
        if texture:
            raise OptionError("--size: a texture needs a size, e.g. --size 2048x2048")
        width, height = cw, ch
    else:
        width, height = parse_size(size, dpi=dpi)
    out = io.check_output_path(output, overwrite) if output is not None else None
    return Job(content_path, styles, width, height, out, texture, bool(overwrite))


def builtin_only(settings: Settings) -> bool:
    """A fast render with a built-in style needs no style image."""
    return settings.method == "fast" and settings.builtin_style is not None


def render(content, style=None, output=None, *, size=None, settings: Settings | None = None, progress=ignore,
           overwrite: bool = False, **overrides) -> Result:
    """Stylise ``content`` with ``style`` (a path, 'path:weight', or a list of them).

    ``size`` is 'WxH', a named print size or (w, h); default: the content's own size.
    ``overrides`` are Settings fields, e.g. ``iterations=(100, 30)``, or RunOptions fields
    (``fresh``, ``keep_work``, ``snapshots``, ...).  An existing ``output`` is replaced only with
    ``overwrite=True``.  ``progress`` receives the events of ``hires.progress`` as objects.
    """
    options, overrides = split_options(overrides)
    settings = (settings or Settings()).replace(**overrides)
    job = make_job(content, style, output, size, texture=False, overwrite=coerce_flag(overwrite, "overwrite"),
                   dpi=settings.dpi, styles_optional=builtin_only(settings), memory=settings.memory)
    return run(job, settings, progress, options)


def texture(example, output=None, *, size=(512, 512), settings: Settings | None = None, progress=ignore,
            overwrite: bool = False, **overrides) -> Result:
    """Synthesise a texture like ``example`` (a path, 'path:weight', or a list of them)."""
    options, overrides = split_options(overrides)
    settings = (settings or Settings()).replace(**overrides)
    job = make_job(None, example, output, size, texture=True, overwrite=coerce_flag(overwrite, "overwrite"),
                   dpi=settings.dpi, memory=settings.memory)
    return run(job, settings, progress, options)


# A texture's whole-frame level is sized so the example appears there at about this long side: its
# largest structures (a brick, a plank: up to about a quarter of a typical example) are then
# 64 px, inside the deepest layer's receptive field (relu5_1: about 200 px) and 16x16 cells of it,
# while the frame holds as many repeats as the finished texture will
EXAMPLE_AT_BASE = 256


def texture_settings(job: Job, settings: Settings, natives: list[tuple[int, int]]) -> Settings:
    """A texture starts from noise, at a whole-frame level no larger than ``base_size`` and no
    larger than needed to show the example at about EXAMPLE_AT_BASE px (coarser is cheaper, and a
    level where the example is smaller than that cannot lay its structures out anyway)."""
    example_long = max(max(w, h) for w, h in natives) * settings.example_scale
    ideal = math.ceil(max(job.width, job.height) * EXAMPLE_AT_BASE / example_long)
    return settings.replace(init="noise", base_size=max(64, min(settings.base_size, ideal)))


def example_coverage(job: Job, settings: Settings, natives: list[tuple[int, int]]) -> str | None:
    """A note when the examples are too large (at ``example_scale``) to repeat in the texture, or so
    small at the whole-frame level that their structures are laid out only by the tiled levels."""
    out_long = max(job.width, job.height)
    example_long = max(max(w, h) for w, h in natives) * settings.example_scale
    repeats = out_long / example_long
    base = schedule(job.width, job.height, settings)[0]
    base_long = max(base.width, base.height)
    at_base = example_long * base_long / out_long
    if repeats < 2:
        return (f"the example spans {example_long:.0f} px at --example-scale {settings.example_scale:g}, "
                f"{1 / repeats:.2g}x the texture's {out_long} px: it will hardly repeat; a smaller "
                "--example-scale shows more of it")
    if at_base < EXAMPLE_AT_BASE / 2:
        return (f"the example is {at_base:.0f} px at the {base_long} px whole-frame level, too small there to lay "
                f"out its largest structures ({repeats:.0f} repeats across); --example-scale "
                f"{settings.example_scale * EXAMPLE_AT_BASE / at_base:.2g} (larger features) or a larger "
                "--base-size (slower) gives them room")
    return None


def with_network(settings: Settings) -> Settings:
    """``settings`` with ``network = auto`` resolved (vgg19 when its weights are found, else hybrid),
    so that every level, the plan and the work key name the network the render uses."""
    from hires.nets import resolve_network
    return settings.replace(network=resolve_network(settings.network, settings.weights))


def plan_job(job: Job, settings: Settings, calibrate: bool = False) -> Plan:
    settings = with_network(settings)
    natives = [io.image_size(p, "style") for p, _ in job.styles]
    if job.texture:
        settings = texture_settings(job, settings, natives)
    check_sizes(job, settings, natives)
    sizes = [_style_size(job, wh, job.width, job.height, settings) for wh in natives]
    plan = make_plan(job.width, job.height, settings, sizes, calibrate)
    if job.texture:
        plan.notes = [n for n in [example_coverage(job, settings, natives)] if n]
    return plan


def check_sizes(job: Job, settings: Settings, natives: list[tuple[int, int]]) -> None:
    """Refuse, before any work, a level or style image whose deepest used layer would be smaller
    than 2x2 (the network's 3x3 convolutions cannot pad a 1 px map)."""
    what = "example" if job.texture else "--style"
    if job.texture and settings.seamless:
        check_seamless_size(job.width, job.height, settings)
    for lv in schedule(job.width, job.height, settings):
        stride = lv.stride
        if min(lv.width, lv.height) < 2 * stride:
            raise OptionError(
                f"--size: {job.width}x{job.height} is {lv.width}x{lv.height} px at level {lv.index}, "
                f"{lv.width // stride}x{lv.height // stride} at {lv.deepest}, and the network needs 2x2 there; "
                f"give a short side of at least {-(-2 * stride * min(job.width, job.height) // min(lv.width, lv.height))} "
                f"px or fewer --style-layers")
        for (path, _), native in zip(job.styles, natives):
            sw, sh = _style_size(job, native, lv.width, lv.height, settings)
            if min(sw, sh) < 2 * stride:
                scale = "example_scale" if job.texture else "style_scale"
                need = getattr(settings, scale) * 2 * stride / min(sw, sh)
                raise InputError(
                    f"{what}: {str(path)!r} ({native[0]}x{native[1]} px) is {sw}x{sh} px at level {lv.index}, "
                    f"{sw // stride}x{sh // stride} at {lv.deepest}, and the network needs 2x2 there; "
                    f"use an image less thin or small, or raise --{flag(scale)} to {need:.3g}")


def _tiles_seamlessly(width: int, height: int, settings: Settings, axis: int) -> bool:
    """Every level's size along ``axis`` (0 width, 1 height) is a multiple of the stride of its
    deepest layer, so the feature maps wrap exactly where the pixels do."""
    return all((lv.width, lv.height)[axis] % lv.stride == 0
               for lv in schedule(width, height, settings))


def check_seamless_size(width: int, height: int, settings: Settings) -> None:
    """Refuse, with the nearest sizes that work, a seamless texture whose levels would not wrap
    exactly (a level side not a multiple of its deepest layer's stride)."""
    if _tiles_seamlessly(width, height, settings, 0) and _tiles_seamlessly(width, height, settings, 1):
        return
    near = []
    for axis, n in ((0, width), (1, height)):
        for d in range(0, n):
            ok = [c for c in (n - d, n + d) if c > 0 and _tiles_seamlessly(
                *((c, height) if axis == 0 else (width, c)), settings, axis)]
            if ok:
                near.append(ok[0])
                break
    bad = next(lv for lv in schedule(width, height, settings)
               if lv.width % lv.stride or lv.height % lv.stride)
    raise OptionError(
        f"--size: a seamless {width}x{height} texture is {bad.width}x{bad.height} px at level {bad.index}, not a "
        f"multiple of {bad.stride} (the stride of its deepest layer), so it cannot wrap exactly; "
        f"use {near[0]}x{near[1]} (or a power of two such as 1024x1024)")


def _style_size(job: Job, native: tuple[int, int], width: int, height: int, settings: Settings):
    """Size of a style image at a level of ``width`` x ``height``.

    Render: the style's long side is ``style_scale`` x the level's (so strokes keep their size
    relative to the picture at every level), but never more than its own: a painting upsampled is
    the statistics of an interpolation blur, and a print's fine levels then paint blur (at a 6000 px
    level a 1280 px painting was 4.7x upsampled).  At the levels where the painting would be
    upsampled its own pixels are the target, so they add its finest brushwork at its own pixel
    scale (docs/networks.md).  Texture: one example px is one output px at the finest level, times
    ``example_scale``, so the coarser levels see the example shrunk alike.
    """
    nw, nh = native
    if job.texture:
        f = settings.example_scale * max(width, height) / max(job.width, job.height)
    else:
        f = min(settings.style_scale * max(width, height) / max(nw, nh), 1.0)
    return max(16, round(nw * f)), max(16, round(nh * f))


def _work_key(job: Job, settings: Settings, network: str) -> str:
    h = hashlib.sha256()
    for p in [job.content, *(p for p, _ in job.styles)]:
        if p is not None:
            st = Path(p).stat()
            h.update(f"{Path(p).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps([job.width, job.height, [w for _, w in job.styles], network,
                         dataclasses.asdict(settings)], default=str, sort_keys=True).encode())
    return h.hexdigest()[:16]


@dataclass
class RenderState:
    """What every level of one render shares."""
    job: Job
    settings: Settings
    plan: Plan
    engine: Engine
    counters: Counters
    scratch: Buffers            # records every scratch file of the render, for cleanup
    checkpoints: Checkpoints
    colour_ref: tuple | None    # the content's colour statistics (histogram transfer)
    rng: np.random.Generator
    progress: object
    fast_image: np.ndarray | None = None   # the fast start at its working size, once made
    painted: np.ndarray | None = None      # the multi-scale fast start at the output size, once made
    snapshots: Snapshots | None = None
    executor: object | None = None          # hires.cluster.DaskRunner when tiles run on a cluster
    # the last finished level's result, held only here: the next level lets go of it once it has
    # resampled it, so it is not held through that level's tiles (the plan does not count it)
    canvas: np.ndarray | None = None


# about five minutes on 2 cores: worth the few seconds a time estimate takes
LONG_RENDER_FLOP = 20e12


def run(job: Job, settings: Settings, progress=ignore, options: RunOptions | None = None) -> Result:
    """Render ``job``; the progress callback also hears how it ended (a Done or a Failed event)."""
    t0 = time.perf_counter()
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
        io.check_format(job.output, settings.bit_depth, settings.pyramid)
    if settings.preserve_color != "none" and job.texture:
        raise OptionError("--preserve-color: a texture has no content colours to keep; leave it at none")
    settings = settings.replace(mode=output_mode(job, settings))
    if settings.method == "fast":
        return run_fast(job, settings, progress)
    settings = with_network(settings)
    if job.texture:  # before the work key is made: the key holds the settings the render uses
        settings = texture_settings(job, settings, [io.image_size(p, "example") for p, _ in job.styles])
    plan = plan_job(job, settings)
    if plan.levels[-1].disk and job.output is None:
        raise OptionError(f"--memory: a {job.width}x{job.height} result does not fit {settings.memory} in memory; "
                          "give an output path so it can be written from disk, or raise --memory")
    if plan.flop > LONG_RENDER_FLOP:
        plan.calibrate(settings)
    engine = Engine(settings, progress)  # first: bad weights are an error before any plan is shown
    progress(PlanReady(plan.as_dict()))
    for line in describe(plan):  # the plan of memory (and time, for long renders) before it starts
        progress(Note(line))
    key = _work_key(job, settings, engine.network_name)
    with lifecycle.session(job.output, settings.work_dir, key, progress, fresh=options.fresh,
                           keep_work=options.keep_work) as checkpoints:
        state = RenderState(job, settings, plan, engine, Counters(work_total=plan.flop),
                            _scratch(checkpoints.folder, plan), checkpoints, None,
                            np.random.default_rng(settings.seed), progress)
        try:
            canvas, out = _levels(state, options, key)
        finally:
            _close(state.executor)
            state.scratch.cleanup()
    c = state.counters
    return Result(canvas, out, engine.network_name, plan, c.levels, time.perf_counter() - t0, c.net_s, c.net_flop / 1e9,
                  cluster=state.executor.log if state.executor else None)


def _levels(state: RenderState, options: RunOptions, key: str) -> tuple[np.ndarray | None, Path | None]:
    """Every level not yet finished, then the output: (the result in RAM, or None when it is
    disk-backed and the output file is the result; the output path)."""
    job, settings, plan = state.job, state.settings, state.plan
    if options.snapshots:
        stem = job.output.stem if job.output else "render"
        state.snapshots = Snapshots.open(options.snapshots, stem, key, options.snapshot_size,
                                         options.snapshot_every, state.progress)
    if settings.preserve_color == "histogram":  # from the base level, so a resumed render gets the same
        lv0 = plan.levels[0].level
        state.colour_ref = colour.colour_stats(
            io.load_image(job.content, size=(lv0.width, lv0.height), what="content"))
    state.canvas, start = resume(state)
    if options.scheduler:
        state.executor = _executor(options.scheduler, plan, settings, state.progress)
    for lp in plan.levels[start:]:
        run_level(state, lp)
    canvas, state.canvas = state.canvas, None
    out = finish(job, settings, canvas, state.scratch.for_level("final", plan.levels[-1].disk),
                 state.checkpoints, state.progress)
    return (None if path_of(canvas) is not None else canvas), out


def output_mode(job: Job, settings: Settings) -> str:
    """``color`` or ``gray``: ``auto`` is gray when every input image is (a gray example gives a gray
    texture, not the random network's colour speckle)."""
    if settings.mode != "auto":
        return settings.mode
    inputs = [p for p, _ in job.styles] + ([job.content] if job.content else [])
    return "gray" if all(io.is_gray(p) for p in inputs) else "color"


def _executor(spec, plan: Plan, settings: Settings, progress):
    """A runner for the tiles on a Dask cluster (``spec``: local:N, an address, or an API user's
    own ``distributed.Client``); a local cluster's workers get the memory the plan says one tile
    needs."""
    from hires import cluster
    client = cluster.connect(spec, plan.worker_bytes(settings))
    workers = client.scheduler_info().get("workers", {})
    progress(Note(f"cluster: {client.scheduler.address}, {len(workers)} worker(s); the tiles of a colour run at once"))
    return cluster.DaskRunner(client, settings, owned=client is not spec)


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
    lp = state.plan.levels[index]
    canvas = state.scratch.for_level(f"level{index}", lp.disk).empty("canvas", saved.shape)
    for y in range(0, saved.shape[0], STRIP):
        canvas[y:y + STRIP] = saved[y:y + STRIP]
        release(canvas, saved)
    del saved
    state.counters.work_done = sum(p.flop for p in state.plan.levels[:index + 1])
    state.progress(Note(f"resuming after level {index} from {state.checkpoints.folder.path}"))
    return canvas, index + 1


def run_level(state: RenderState, lp: LevelPlan) -> None:
    """One pyramid level: load the content and style statistics at its size, start from the
    coarser level's result ``state.canvas`` (or the initial image), refine every pass, checkpoint,
    and leave the result in ``state.canvas``."""
    canvas, state.canvas = state.canvas, None
    lv, s, engine, counters = lp.level, state.settings, state.engine, state.counters
    n_levels = len(state.plan.levels)
    buffers = state.scratch.for_level(f"level{lv.index}", lp.disk)
    tl, net_s0, flop0 = time.perf_counter(), counters.net_s, counters.net_flop
    shape = (lv.height, lv.width, 3)
    if lv.fast:
        state.progress(Note(f"level {lv.index + 1}/{n_levels} {lv.width}x{lv.height}: the fast network's "
                            "stylisation"))
        state.canvas = _fast_level(state, lp, canvas, buffers)
        return
    state.progress(LevelStarted(lv.index, n_levels, lv.width, lv.height, len(lp.tiles), lv.iterations,
                                lv.style_layers))
    precision = engine.use_level(lv)  # the style statistics, the passes and the workers all alike
    if state.executor is not None:
        state.executor.settings = state.executor.settings.replace(precision=precision)
    content = None
    fast_started = any(p.level.fast for p in state.plan.levels[:lv.index])  # (also after a resume)
    if state.job.content and not fast_started:
        content = io.load_image(state.job.content, size=(lv.width, lv.height), what="content",
                                out=buffers.empty("content", shape))
    targets = level_targets(engine, state.job, s, lp, buffers, state.colour_ref)
    coarser = None
    if canvas is None:
        canvas = initial_canvas(content, lv, s, state.rng, state.job, state.colour_ref)
    else:
        previous, coarser = canvas, canvas.shape[:2]
        canvas = io.resize(previous, lv.width, lv.height, out=buffers.empty("canvas", shape),
                           wrap=state.job.texture and s.seamless)
        state.scratch.discard(previous)
        del previous  # not held through this level's refinement
        if state.job.texture and s.detail:
            cov = detail.octave_covariance(*examples_at(state.job, s, lv.width, lv.height))
            detail.add_noise(canvas, cov, s.detail, s.seed, lv.index)
    if fast_started:
        # above the fast start, the content to keep is the painted start, not the photo: pulled
        # toward the photo's features, the refinement washed the painting back out (README, gallery)
        content = painted_content(state, canvas, coarser, buffers)
    for i, tiles in enumerate(lp.passes):
        after = state.snapshots.tile_done(lv.index, i) if state.snapshots else None
        ctx = PassContext(buffers, counters, n_levels, i, state.checkpoints, after, state.executor, lp.reuse)
        canvas = engine.refine(canvas, content, targets, lv, tiles, ctx)
    if s.mode == "gray":  # each level starts the next from gray, so colour cannot build up
        to_gray(canvas)
    state.checkpoints.save(lv.index, canvas)
    if state.snapshots:
        state.snapshots.level_done(canvas, lv.index)
    release(canvas)
    counters.levels.append(LevelReport(
        lv.index, lv.width, lv.height, len(lp.tiles), lv.iterations, time.perf_counter() - tl,
        counters.net_s - net_s0, (counters.net_flop - flop0) / 1e9))
    state.scratch.discard(content)
    state.canvas = canvas


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
        job, s = state.job, state.settings
        stylist = fast.Stylist(job.styles, job.content, s, _recolour(state.colour_ref), pick_device(s.device))
        stages = fast.stage_sizes(job.width, job.height, s.fast_size)
        budget = parse_memory(s.memory)
        # held through the levels that use it, which the plan does not count: on disk (its pages
        # handed back after each use) when it is more than a sliver of the budget
        disk = state.scratch.folder is not None and job.width * job.height * 12 > 0.05 * budget
        state.painted, _ = paint(job, s, stylist, stages, state.scratch.for_level("painted", disk), budget,
                                 state.progress)
    h, w = canvas.shape[:2]
    io.resize(state.painted, w, h, out=content)
    blurred = io.resize(io.resize(state.painted, coarser[1], coarser[0]), w, h, out=buffers.empty("coarser", canvas.shape))
    for y in range(0, h, STRIP):
        canvas[y:y + STRIP] = np.clip(canvas[y:y + STRIP] + content[y:y + STRIP] - blurred[y:y + STRIP], 0.0, 1.0)
        release(canvas, content, blurred)
    buffers.discard(blurred)
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
    content's colour statistics, for histogram transfer), mixed by weight."""
    lv = lp.level

    def images():
        for path, weight in job.styles:
            sw, sh = _style_size(job, io.image_size(path, "style"), lv.width, lv.height, s)
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

    return style_targets(engine, images(), lv.layers, lv.deepest, stats_grid)


def to_gray(canvas: np.ndarray) -> None:
    """Every pixel of a canvas (RAM or disk) to its luminance, in strips."""
    for y in range(0, canvas.shape[0], STRIP):
        colour.to_gray(canvas[y:y + STRIP])
        release(canvas)


def initial_canvas(content, lv: Level, settings: Settings, rng, job: Job, colour_ref=None) -> np.ndarray:
    if content is not None and settings.init in ("auto", "fast"):
        return fast_start(lv, job, settings, colour_ref)
    if content is not None and settings.init == "content":
        return np.array(content)
    if content is not None:
        mean = content.reshape(-1, 3).mean(0)
    else:  # texture: start from the examples' mean colour
        mean = np.zeros(3, np.float32)
        total = sum(w for _, w in job.styles)
        for path, w in job.styles:
            mean += io.load_image(path, long_side=64, what="example").reshape(-1, 3).mean(0) * (w / total)
    noise = rng.standard_normal((lv.height, lv.width, 3)).astype(np.float32) * 0.15
    start = np.clip(mean[None, None, :] + noise, 0.0, 1.0).astype(np.float32)
    return colour.to_gray(start) if settings.mode == "gray" else start


def _recolour(colour_ref):
    """For histogram colour transfer: recolour a style image to the content's palette."""
    if colour_ref is None:
        return None
    return lambda img: colour.histogram_transform(colour.colour_stats(img), colour_ref)(img)


def fast_start(lv: Level | None, job: Job, settings: Settings, colour_ref=None) -> np.ndarray:
    """The content stylised by the feed-forward network at its working size (``--fast-size``, so its
    strokes keep the size they have in ``--method fast``), resampled to ``lv``'s size if given."""
    stylist = fast.Stylist(job.styles, job.content, settings, _recolour(colour_ref), pick_device(settings.device))
    ww, wh = fast.working_size(job.width, job.height, settings.fast_size)
    x = io.load_image(job.content, size=(ww, wh), what="content")
    y = np.empty_like(x)
    stylist.runner()(x, y, fast.tile_for(parse_memory(settings.memory), ww, wh, x.nbytes * 2, stylist.bytes_per_px))
    return y if lv is None or (ww, wh) == (lv.width, lv.height) else io.resize(y, lv.width, lv.height)


@dataclass
class FastPlan:
    """What ``--method fast`` will do: the transformer's working sizes (one, or the multi-scale
    stages), its tiles at the largest, where buffers live."""
    width: int
    height: int
    stages: list[tuple[int, int]]
    tile: int
    tiles: int
    disk: bool
    budget: int
    peak_bytes: float

    @property
    def working(self) -> tuple[int, int]:
        return self.stages[-1]

    def describe(self) -> list[str]:
        ww, wh = self.working
        sizes = " then ".join(f"{w}x{h}" for w, h in self.stages)
        return [f"fast: target {self.width}x{self.height}, the network at {sizes}"
                + (" (each stage over half the coarser one)" if len(self.stages) > 1 else "")
                + ("" if (ww, wh) == (self.width, self.height) else ", resampled")
                + f", {self.tiles} tile(s) of {self.tile} px, buffers {'on disk' if self.disk else 'in RAM'}, "
                  f"estimated peak {self.peak_bytes / 2**30:.2f} GiB of {self.budget / 2**30:.2f}"]

    def as_dict(self) -> dict:
        return {"method": "fast", "network": "magenta", "width": self.width, "height": self.height,
                "working_width": self.working[0], "working_height": self.working[1],
                "stages": [list(wh) for wh in self.stages], "tile": self.tile, "tiles": self.tiles,
                "canvas": "disk" if self.disk else "ram", "memory_budget_bytes": self.budget,
                "peak_bytes": int(self.peak_bytes)}


def fast_stages(job: Job, s: Settings) -> list[tuple[int, int]]:
    if s.multiscale:
        return fast.stage_sizes(job.width, job.height, s.fast_size)
    return [fast.working_size(job.width, job.height, s.fast_size)]


def fast_plan(job: Job, s: Settings) -> FastPlan:
    budget = parse_memory(s.memory)
    stages = fast_stages(job, s)
    ww, wh = stages[-1]
    # the photo, the result and the coarser stage resampled at the largest stage, the first stage,
    # and the output when it is resampled
    ram_bytes = 3 * ww * wh * 12 + (stages[0][0] * stages[0][1] * 12 if len(stages) > 1 else 0)
    ram_bytes += 2 * job.width * job.height * 12 if (ww, wh) != (job.width, job.height) else 0
    disk = fast.FIXED_BYTES + ram_bytes > 0.6 * budget
    per_px = fast.bytes_per_px(s.builtin_style is not None)
    tile = fast.tile_for(budget, ww, wh, 0 if disk else ram_bytes, per_px)
    tiles = fast.grid(ww, wh, tile, 0, fast.MARGIN, False)
    region = max(t.shape[0] * t.shape[1] for t in tiles)
    peak = fast.FIXED_BYTES + (0 if disk else ram_bytes) + region * per_px
    if peak > budget:  # as for the optimised method: refused before any work
        raise BudgetError(f"--memory: {s.memory} is too small for --method fast at {job.width}x{job.height}; it "
                          f"needs about {peak / 2**30:.2f} GiB even with the smallest tiles; raise --memory")
    return FastPlan(job.width, job.height, stages, tile, len(tiles), disk, budget, peak)


def paint(job: Job, s: Settings, stylist: fast.Stylist, stages, scratch: Buffers, budget: int, progress=ignore):
    """The content painted by the fast network at ``stages`` (fast.cascade): the image at the last
    stage's size, in ``scratch``, and the tiling of the largest run."""
    def content_at(size, out):
        return io.load_image(job.content, size=size, what="content", out=out)

    def stage_done(w, h):
        progress(Note(f"fast: painted at {w}x{h}"))

    return fast.cascade(stylist, content_at, stages, scratch, budget, stage_done if len(stages) > 1 else None)


def run_fast(job: Job, settings: Settings, progress=ignore) -> Result:
    """``--method fast``: the feed-forward network at the working size, or at every stage of the
    multi-scale cascade (tiled, with exact whole-image instance norm, when the budget asks),
    resampled to the output size, colour option, atomic write."""
    t0 = time.perf_counter()
    if job.texture:
        raise OptionError("--method fast: textures are synthesised by optimisation; leave --method at optimise")
    s = settings
    fp = fast_plan(job, s)
    (ww, wh), disk = fp.working, fp.disk
    if disk and job.output is None:
        raise OptionError(f"--memory: a {job.width}x{job.height} result does not fit {s.memory} in memory; "
                          "give an output path so it can be written from disk, or raise --memory")
    device = pick_device(s.device)
    return_memory_promptly(fast.MMAP_THRESHOLD)
    colour_ref = None
    if s.preserve_color == "histogram":
        colour_ref = colour.colour_stats(io.load_image(job.content, long_side=512, what="content"))
    stylist = fast.Stylist(job.styles, job.content, s, _recolour(colour_ref), device)
    progress(Note(f"network: {stylist.name}"))
    progress(PlanReady(fp.as_dict()))
    for line in fp.describe():
        progress(Note(line))
    # the same lifecycle as the optimised method: lock, work folder, the temporary output recorded
    # (a run killed while writing leaves it: the next run removes it)
    with lifecycle.session(job.output, s.work_dir, _work_key(job, s, stylist.name), progress) as checkpoints:
        work = checkpoints.folder
        scratch = Buffers(work.path / f"buffers-{os.getpid()}" if work else None, disk)
        try:
            t_net = time.perf_counter()
            result, report = paint(job, s, stylist, fp.stages, scratch, fp.budget, progress)
            net_s = time.perf_counter() - t_net
            if (ww, wh) != (job.width, job.height):
                small = result
                result = io.resize(small, job.width, job.height,
                                   out=scratch.empty("final", (job.height, job.width, 3)))
                scratch.discard(small)
                del small
            out = finish(job, s, result, scratch, checkpoints, progress)
            image = None if path_of(result) is not None else result
        finally:
            scratch.cleanup()
    progress(Note(f"fast: {report.tiles} tile(s), {report.passes} pass(es)"))
    return Result(image, out, "magenta", None, [], time.perf_counter() - t0, net_s, 0.0, report)


def examples_at(job: Job, s: Settings, width: int, height: int) -> tuple[list[np.ndarray], list[float]]:
    """A texture's examples at the size they have at a level of ``width`` x ``height``, and their
    weights."""
    images = []
    for path, _ in job.styles:
        ew, eh = _style_size(job, io.image_size(path, "example"), width, height, s)
        images.append(io.load_image(path, size=(ew, eh), what="example"))
    return images, [weight for _, weight in job.styles]


def match_examples(canvas: np.ndarray, job: Job, s: Settings) -> None:
    """Give a texture the colour mean and covariance of its examples (mixed by weight), each read
    at the size it has at the finest level, so at the scale its pixels appear in the output."""
    images, weights = examples_at(job, s, job.width, job.height)
    target = colour.mix_stats([colour.colour_stats(ex) for ex in images], weights)
    transform = colour.histogram_transform(colour.colour_stats(canvas, after_strip=lambda: release(canvas)), target)
    for y in range(0, canvas.shape[0], STRIP):
        canvas[y:y + STRIP] = transform(canvas[y:y + STRIP])
        release(canvas)


def finish(job: Job, s: Settings, canvas: np.ndarray, buffers: Buffers, checkpoints: Checkpoints | None = None,
           progress=ignore) -> Path | None:
    """Apply the luminance option (strip by strip, the content in a buffer the plan allows) and
    write the output atomically."""
    if s.preserve_color == "luminance":
        content = io.load_image(job.content, size=(job.width, job.height), what="content",
                                out=buffers.empty("content-final", canvas.shape))
        for y in range(0, canvas.shape[0], STRIP):  # in strips: no full-size temporaries
            canvas[y:y + STRIP] = colour.preserve_luminance(canvas[y:y + STRIP], content[y:y + STRIP])
            release(canvas, content)
        buffers.discard(content)
    if job.texture and s.match_colours:
        match_examples(canvas, job, s)
    if s.mode == "gray":
        to_gray(canvas)
    if job.output is None:
        return None
    tmp = io.partial_path(job.output)
    if checkpoints is not None:  # a run killed while writing: the next run removes the file it made
        checkpoints.remember_partial_output(tmp)
    progress(Writing(str(job.output)))
    # (a disk-backed canvas is written from its memmap, a window at a time: io.release_while_written);
    # a file that appeared at the output during the render is replaced only with --overwrite
    out = io.save_image(canvas, job.output, s.bit_depth, s.dpi, s.quality, overwrite=job.overwrite,
                        pyramid=s.pyramid, tmp=tmp, gray=s.mode == "gray")
    if checkpoints is not None:
        checkpoints.remember_partial_output(None)
    return out
