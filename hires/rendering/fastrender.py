"""``--method fast`` planned and run (the feed-forward network at its working size, or at every
stage of the multi-scale cascade, tiled inside ``--memory``), and the fast start of the optimised
method, beside ``hires.fast.fast`` which runs the network itself.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np

from hires.core import colour, io
from hires.fast import fast, stylecode
from hires.rendering import lifecycle
from hires.core.canvas import Buffers, path_of, return_memory_promptly
from hires.core.config import Settings, parse_memory
from hires.core.errors import BudgetError, OptionError
from hires.core.progress import Note, PlanReady, ignore
from hires.engine.pyramid import Level
from hires.core.device import pick_device
from hires.rendering.finishing import Result, finish
from hires.rendering.request import Job, RunOptions, work_key
from hires.rendering.jobplan import describe_regions, mask_bytes_per_px

def recolour(colour_ref):
    """For histogram colour transfer: recolour a style image to the content's palette."""
    if colour_ref is None:
        return None
    return lambda img: colour.histogram_transform(colour.colour_stats(img), colour_ref)(img)


def fast_start(lv: Level | None, job: Job, settings: Settings, colour_ref=None) -> np.ndarray:
    """The content stylised by the feed-forward network at its working size (``--fast-size``, so its
    strokes keep the size they have in ``--method fast``), resampled to ``lv``'s size if given."""
    stylist = stylecode.Stylist(job.styles, job.content, settings, recolour(colour_ref), pick_device(settings.device),
                           job.masks)
    ww, wh = fast.working_size(job.width, job.height, settings.fast_size)
    x = io.load_image(job.content, size=(ww, wh), what="content")
    y = np.empty_like(x)
    t = fast.tiling(parse_memory(settings.memory), ww, wh, x.nbytes * 2, stylist.bytes_per_px)
    stylist.runner()(x, y, t.tile, t.room)
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
    notes: list[str] = field(default_factory=list)   # the style regions, when masks are given

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
                  f"estimated peak {self.peak_bytes / 2**30:.2f} GiB of {self.budget / 2**30:.2f}"] + \
            [f"note: {n}" for n in self.notes]

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
    per_px = fast.bytes_per_px(s.builtin_style is not None) + fast.region_bytes_per_px(job.masks)
    ram_bytes += mask_bytes_per_px(job) * ww * wh  # the regions' weights at the network's size
    layout = fast.tiling(budget, ww, wh, 0 if disk else ram_bytes, per_px)
    tile = layout.tile
    tiles = fast.grid(ww, wh, tile, 0, fast.MARGIN, False)
    region = max(t.shape[0] * t.shape[1] for t in tiles)
    peak = fast.FIXED_BYTES + (0 if disk else ram_bytes) + region * per_px + layout.room
    if peak > budget:  # as for the optimised method: refused before any work
        raise BudgetError(f"--memory: {s.memory} is too small for --method fast at {job.width}x{job.height}; it "
                          f"needs about {peak / 2**30:.2f} GiB even with the smallest tiles; raise --memory")
    return FastPlan(job.width, job.height, stages, tile, len(tiles), disk, budget, peak,
                    [describe_regions(job)] if job.masks else [])


def paint(job: Job, s: Settings, stylist: stylecode.Stylist, stages, scratch: Buffers, budget: int, progress=ignore):
    """The content painted by the fast network at ``stages`` (fast.cascade): the image at the last
    stage's size, in ``scratch``, and the tiling of the largest run."""
    def content_at(size, out):
        return io.load_image(job.content, size=size, what="content", out=out)

    def stage_done(w, h):
        progress(Note(f"fast: painted at {w}x{h}"))

    return fast.cascade(stylist, content_at, stages, scratch, budget, stage_done if len(stages) > 1 else None)


def run_fast(job: Job, settings: Settings, progress=ignore, options: RunOptions | None = None) -> Result:
    """``--method fast``: the feed-forward network at the working size, or at every stage of the
    multi-scale cascade (tiled, with exact whole-image instance norm, when the budget asks),
    resampled to the output size, colour option, atomic write."""
    t0 = time.perf_counter()
    options = options or RunOptions()
    if job.texture:
        raise OptionError("--method fast: textures are synthesised by optimisation; leave --method at optimise")
    if options.scheduler is not None:
        raise OptionError("--scheduler: --method fast runs in this process in seconds, not on a cluster; "
                          "leave --scheduler out (it serves --method optimise)")
    if options.snapshots is not None:
        raise OptionError("--snapshots: --method fast paints in seconds and writes no previews; leave --snapshots "
                          "out (it serves --method optimise)")
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
    stylist = stylecode.Stylist(job.styles, job.content, s, recolour(colour_ref), device, job.masks)
    progress(Note(f"network: {stylist.name}"))
    progress(PlanReady(fp.as_dict()))
    for line in fp.describe():
        progress(Note(line))
    # the same lifecycle as the optimised method: lock, work folder, the temporary output recorded
    # (a run killed while writing leaves it: the next run removes it)
    with lifecycle.session(job.output, s.work_dir, work_key(job, s, stylist.name), progress, fresh=options.fresh,
                           keep_work=options.keep_work) as checkpoints:
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
    return Result(image, out, "magenta", fp, [], time.perf_counter() - t0, net_s, 0.0, report)
