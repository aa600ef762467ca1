"""What a level starts from: its canvas (the initial image, or the coarser level's result resampled
with a texture's detail noise), its content target (the photo, the patch start's shapes, or the
painted start) and its style targets (the style images' statistics at its scale).
"""
from __future__ import annotations

import time

import numpy as np

from hires.core import colour, io
from hires.core.canvas import Buffers, release
from hires.core.config import Settings, parse_memory
from hires.core.device import pick_device
from hires.engine import detail
from hires.engine.engine import Engine
from hires.engine.pyramid import Level
from hires.engine.stats import style_targets
from hires.engine.tiles import grid
from hires.fast import fast, stylecode
from hires.fast.hstyle import image_sources
from hires.planning.planner import LevelPlan
from hires.rendering.fastrender import fast_start, paint, recolour
from hires.rendering.finishing import STRIP, examples_at
from hires.rendering.jobplan import style_size
from hires.rendering.request import Job
from hires.rendering.state import RenderState


STATS_TILE = 512



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
