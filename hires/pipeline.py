"""render() and texture(): inputs checked, planned, synthesised level by level, written atomically."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hires import io, losses
from hires.canvas import Buffers, path_of, release
from hires.config import Settings, parse_size, parse_style
from hires.engine import Engine, LevelReport
from hires.errors import InputError, OptionError
from hires.plan import Plan, describe, make_plan
from hires.progress import LevelStarted, Note, ignore
from hires.tiles import grid

log = logging.getLogger(__name__)
STATS_TILE = 512


@dataclass
class Result:
    """What a render produced and what it cost."""
    image: np.ndarray | None     # float32 (H, W, 3) in [0, 1]; None when the canvas was disk-backed
    output: Path | None
    network: str
    plan: Plan
    levels: list[LevelReport]
    wall_s: float
    net_s: float
    net_gflop: float


@dataclass
class Job:
    content: Path | None
    styles: list[tuple[Path, float]]
    width: int
    height: int
    output: Path | None
    texture: bool


def _styles(style, what: str) -> list[tuple[Path, float]]:
    specs = [style] if isinstance(style, (str, Path, tuple)) else list(style or [])
    if not specs:
        raise OptionError(f"{what}: give at least one image")
    out = []
    for spec in specs:
        path, weight = spec if isinstance(spec, tuple) else parse_style(str(spec))
        io.check_decodes(path, what)
        out.append((Path(path), float(weight)))
    return out


def make_job(content, style, output, size, texture: bool) -> Job:
    content_path = None
    if not texture:
        content_path = Path(content)
        cw, ch = io.check_decodes(content_path, "content")
    styles = _styles(style, "example" if texture else "--style")
    if size is None:
        if texture:
            raise OptionError("--size: a texture needs a size, e.g. --size 2048x2048")
        width, height = cw, ch
    else:
        width, height = parse_size(size)
    out = io.check_output_path(output) if output is not None else None
    return Job(content_path, styles, width, height, out, texture)


def render(content, style, output=None, *, size=None, settings: Settings | None = None, progress=ignore,
           **overrides) -> Result:
    """Stylise ``content`` with ``style`` (a path, 'path:weight', or a list of them).

    ``size`` is 'WxH', a named print size or (w, h); default: the content's own size.
    ``overrides`` are Settings fields, e.g. ``iterations=(100, 30)``.
    """
    settings = (settings or Settings()).replace(**overrides)
    return run(make_job(content, style, output, size, texture=False), settings, progress)


def texture(example, output=None, *, size=(512, 512), settings: Settings | None = None, progress=ignore,
            **overrides) -> Result:
    """Synthesise a texture like ``example`` (a path, 'path:weight', or a list of them)."""
    settings = (settings or Settings()).replace(**overrides)
    if settings.init != "noise":
        settings = settings.replace(init="noise")
    return run(make_job(None, example, output, size, texture=True), settings, progress)


def plan_job(job: Job, settings: Settings, calibrate: bool = False) -> Plan:
    sizes = [io.image_size(p, "style") for p, _ in job.styles]
    sizes = [_style_size(job, (w, h), job.width, job.height, settings) for w, h in sizes]
    return make_plan(job.width, job.height, settings, sizes, calibrate)


def _style_size(job: Job, native: tuple[int, int], width: int, height: int, settings: Settings):
    """Size of a style image at a level of ``width`` x ``height``.

    Render: the style's long side is ``style_scale`` x the output's (so strokes keep their size
    relative to the picture at every level).  Texture: one example px is one output px at the
    finest level, times ``style_scale``, so the coarser levels see the example shrunk alike.
    """
    nw, nh = native
    if job.texture:
        f = settings.style_scale * max(width, height) / max(job.width, job.height)
    else:
        f = settings.style_scale * max(width, height) / max(nw, nh)
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


class Checkpoints:
    """Finished levels saved in a work folder, so a crashed render resumes where it stopped.

    A level is stored as raw float32 (copied file to file when the canvas is disk-backed, so a
    checkpoint never pulls a whole canvas into memory)."""

    def __init__(self, folder: Path | None, key: str):
        self.folder, self.key = folder, key

    def latest(self) -> tuple[int, np.ndarray] | None:
        if self.folder is None or not (self.folder / "state.json").exists():
            return None
        try:
            state = json.loads((self.folder / "state.json").read_text())
            if state.get("key") != self.key:
                return None
            data = np.memmap(self.folder / f"level{state['level']}.f32", np.float32, mode="r",
                             shape=tuple(state["shape"]))
            return state["level"], data
        except (OSError, ValueError, KeyError):
            return None

    def save(self, level: int, canvas: np.ndarray) -> None:
        if self.folder is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f"level{level}.f32.partial"
        src = path_of(canvas)
        if src is not None:
            canvas.flush()
            shutil.copyfile(src, tmp)
        else:
            canvas.tofile(tmp)
        tmp.replace(self.folder / f"level{level}.f32")
        state = {"key": self.key, "level": level, "shape": list(canvas.shape)}
        (self.folder / "state.json.partial").write_text(json.dumps(state))
        (self.folder / "state.json.partial").replace(self.folder / "state.json")
        for old in self.folder.glob("level*.f32"):
            if old.name != f"level{level}.f32":
                old.unlink()

    def clear(self) -> None:
        if self.folder is not None and self.folder.exists():
            shutil.rmtree(self.folder, ignore_errors=True)


# about five minutes on 2 cores: worth the few seconds a time estimate takes
LONG_RENDER_FLOP = 20e12


def run(job: Job, settings: Settings, progress=ignore) -> Result:
    t0 = time.perf_counter()
    if settings.preserve_color != "none" and job.texture:
        raise OptionError("--preserve-color: a texture has no content colours to keep; leave it at none")
    plan = plan_job(job, settings)
    if plan.flop > LONG_RENDER_FLOP:
        plan.calibrate(settings)
    engine = Engine(settings, progress)  # first: bad weights are an error before any plan is shown
    for line in describe(plan):  # the plan of memory (and time, for long renders) before it starts
        progress(Note(line))
    rng = np.random.default_rng(settings.seed)
    engine.counters.work_total = plan.flop
    folder = Path(settings.work_dir) if settings.work_dir else (
        job.output.parent / f".{job.output.stem}.hires-work" if job.output else None)
    ckpt = Checkpoints(folder, _work_key(job, settings, engine.network_name))
    if plan.levels[-1].disk and job.output is None:
        raise OptionError(f"--memory: a {job.width}x{job.height} result does not fit {settings.memory} in memory; "
                          "give an output path so it can be written from disk, or raise --memory")
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    # level buffers live in the work folder, so a crash leaves one hidden folder, cleared on success
    scratch = Path(tempfile.mkdtemp(prefix="hires-", dir=folder))
    try:
        canvas = _synthesise(job, settings, plan, engine, ckpt, scratch, rng, progress)
        out = None
        if job.output is not None:
            src = path_of(canvas)
            image = canvas if src is None else io.vips_from_raw(src, canvas.shape)
            out = io.save_image(image, job.output, settings.bit_depth, settings.dpi, settings.quality)
            ckpt.clear()
        if path_of(canvas) is not None:
            canvas = None  # disk-backed: the output file is the result
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    c = engine.counters
    return Result(canvas, out, engine.network_name, plan, c.levels, time.perf_counter() - t0, c.net_s,
                  c.net_flop / 1e9)


def _synthesise(job: Job, settings: Settings, plan: Plan, engine: Engine, ckpt: Checkpoints, scratch: Path,
                rng, progress) -> np.ndarray:
    n_levels = len(plan.levels)
    resume = ckpt.latest()
    canvas, start = None, 0
    if resume is not None:
        start, canvas = resume[0] + 1, resume[1]
        engine.counters.work_done = sum(lp.flop for lp in plan.levels[:start])
        progress(Note(f"resuming after level {resume[0]} from {ckpt.folder}"))
    colour_ref = None
    content = None
    for lp in plan.levels[start:]:
        lv = lp.level
        buffers = engine.buffers = Buffers(scratch / f"level{lv.index}", lp.disk)
        tl = time.perf_counter()
        net_s0, flop0 = engine.counters.net_s, engine.counters.net_flop
        progress(LevelStarted(lv.index, n_levels, lv.width, lv.height, len(lp.tiles), lv.iterations,
                              lv.style_layers))
        shape = (lv.height, lv.width, 3)
        content = None
        if job.content:
            content = io.load_image(job.content, size=(lv.width, lv.height), what="content",
                                    out=buffers.empty("content", shape))
            if settings.preserve_color == "histogram" and colour_ref is None:
                colour_ref = losses.colour_stats(content)
        targets = style_targets(engine, job, settings, lv, lp, colour_ref)
        if canvas is None:
            canvas = initial_canvas(content, targets, lv, settings, rng, job)
        else:
            previous = canvas
            canvas = io.resize(previous, lv.width, lv.height, out=buffers.empty("canvas", shape))
            _discard(previous)
            previous = None  # not held through this level's refinement
        canvas = engine.refine(canvas, content, targets, lv, lp.tiles, n_levels)
        if settings.second_pass and len(lp.tiles) > 1:
            shifted = grid(lv.width, lv.height, lp.tile, settings.overlap, lp.margin, settings.seamless,
                           shift=lp.tile // 2)
            canvas = engine.refine(canvas, content, targets, lv, shifted, n_levels)
        ckpt.save(lv.index, canvas)
        release(canvas)
        engine.counters.levels.append(LevelReport(
            lv.index, lv.width, lv.height, len(lp.tiles), lv.iterations, time.perf_counter() - tl,
            engine.counters.net_s - net_s0, (engine.counters.net_flop - flop0) / 1e9))
        if lv.index < n_levels - 1:
            _discard(content)
    if settings.preserve_color == "luminance":
        if content is None:
            content = io.load_image(job.content, size=(job.width, job.height), what="content")
        for y in range(0, canvas.shape[0], 256):  # in strips: no full-size temporaries
            canvas[y:y + 256] = losses.preserve_luminance(canvas[y:y + 256], content[y:y + 256])
            release(canvas, content)
    return canvas


def _discard(arr) -> None:
    """Free a level buffer; a disk-backed one loses its file too."""
    src = path_of(arr) if arr is not None else None
    if src is not None and src.exists() and "hires-" in str(src.parent.parent):
        src.unlink()


def style_targets(engine: Engine, job: Job, settings: Settings, lv, lp, colour_ref):
    """Per-layer style statistics at this level: each style image's, mixed by weight."""
    layers = lv.layers
    total = sum(w for _, w in job.styles)
    mixed: dict[str, list] = {}
    for path, weight in job.styles:
        sw, sh = _style_size(job, io.image_size(path, "style"), lv.width, lv.height, settings)
        # on a disk-backed level the style image is disk-backed too: a style image larger than
        # memory is read tile by tile like the canvas
        img = io.load_image(path, size=(sw, sh), what="style", out=engine.buffers.empty("style", (sh, sw, 3)))
        if colour_ref is not None:
            transform = losses.histogram_transform(losses.colour_stats(img), colour_ref)
            for y in range(0, sh, 256):
                img[y:y + 256] = transform(img[y:y + 256])
        # statistics only need a forward pass, so larger tiles than the refine pass's fit; the
        # example itself is not tileable, so its grid never wraps
        tiles = grid(sw, sh, max(lp.tile, STATS_TILE), settings.overlap, lp.margin, False)
        stats = engine.stats_pass(img, layers, lv.deepest, tiles)
        for name, st in stats.items():
            if st.count <= 0:
                raise InputError(f"style: {str(path)!r} is too small at this scale ({sw}x{sh} px) for layer "
                                 f"{name}; raise --style-scale or use a larger style image")
            g, m = st.gram_mean()
            acc = mixed.setdefault(name, [0.0, 0.0])
            acc[0] = acc[0] + g * (weight / total)
            acc[1] = acc[1] + m * (weight / total)
    return {name: losses.make_target(g, m) for name, (g, m) in mixed.items()}


def initial_canvas(content, targets, lv, settings: Settings, rng, job: Job) -> np.ndarray:
    if content is not None and settings.init == "content":
        return content.copy()
    if content is not None:
        mean = content.reshape(-1, 3).mean(0)
    else:  # texture: start from the examples' mean colour
        mean = np.zeros(3, np.float32)
        total = sum(w for _, w in job.styles)
        for path, w in job.styles:
            mean += io.load_image(path, long_side=64, what="example").reshape(-1, 3).mean(0) * (w / total)
    noise = rng.standard_normal((lv.height, lv.width, 3)).astype(np.float32) * 0.15
    return np.clip(mean[None, None, :] + noise, 0.0, 1.0).astype(np.float32)
