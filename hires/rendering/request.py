"""What the user asked, resolved and checked: a render or texture job (inputs decoded small,
sizes, output path, styles and their weights), its run options, the network ``auto`` stands for,
the size of each style image at each level, the texture's start, the work key, and the plan.  The
CLI, batch files and the Python API all build their jobs here.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import typing
from dataclasses import dataclass
from pathlib import Path


from hires.core import io
from hires.fast.hstyle import image_sources, is_hstyle, load as load_fitted
from hires.core.coercion import coerce_value, scheduler_spec
from hires.core.config import Settings, check_weight, flag, parse_memory, parse_size, parse_style
from hires.core.errors import BudgetError, InputError, OptionError
from hires.core.output import check_output_path
from hires.engine.pyramid import schedule
from hires.planning.planner import Plan, make_plan
from hires.engine.regions import ASPECT_TOLERANCE, Masks, load_mask

log = logging.getLogger(__name__)


@dataclass
class Job:
    content: Path | None
    styles: list[tuple[Path, float]]
    width: int
    height: int
    output: Path | None
    texture: bool
    overwrite: bool = False      # the output may replace a file at its path (else never, even at the end)
    masks: Masks = Masks()       # the style regions' masks and the part kept photographic (hires.engine.regions)


def _run_opt(default, help, metavar=None):
    return dataclasses.field(default=default, metadata={"help": help, "metavar": metavar})


@dataclass
class RunOptions:
    """How a render runs, as opposed to what it makes (Settings): none of these changes the result,
    so none is part of the key that decides whether checkpoints may be resumed.  The CLI's flags
    derive from these fields, as the settings' flags from Settings."""
    fresh: bool = _run_opt(False, "start again, ignoring what an interrupted run of this render saved")
    keep_work: bool = _run_opt(False, "keep the work folder (checkpoints) after the output is written")
    snapshots: str | None = _run_opt(None, "write downscaled previews into DIR as the render goes", "DIR")
    snapshot_size: int = _run_opt(1024, "long side of the previews in px", "PX")
    snapshot_every: int = _run_opt(8, "a preview every N tiles of a tiled level, and after every level", "N")
    scheduler: object = _run_opt(None, "refine each level's tiles on a Dask cluster (pip install 'hires[distributed]'): "
                                       "local:N starts N workers here, tcp://HOST:PORT joins a running scheduler",
                                 "local:N|tcp://HOST:PORT")

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
        if f.name == "scheduler":  # a spec string, or an API user's own Client
            value = scheduler_spec(value, prefix + (label(f.name) if label else f.name))
        else:
            value = coerce_value(_RUN_HINTS[f.name], value, prefix + (label(f.name) if label else f.name),
                                 check=RUN_LIMITS.get(f.name))
        out.__dict__[f.name] = value
    snaps = out.snapshots
    if snaps is not None and (not snaps.strip() or (os.path.lexists(snaps) and not os.path.isdir(snaps))):
        name = prefix + (label("snapshots") if label else "snapshots")
        raise OptionError(f"{name}: {snaps!r} " + ("is an empty name" if not snaps.strip() else
                          "exists and is not a folder") + "; give a folder for the previews")
    return out


def path_argument(value, what: str) -> Path:
    """A path the API was given (str or os.PathLike, not empty), else an InputError naming ``what``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what}: {value!r} is not a file path; give a str or pathlib.Path")
    return Path(value)


def _style_specs(style, what: str) -> list:
    """The style argument as a list of specs: a path ('painting.jpg:0.7' for a weight), a (path,
    weight) pair, or a list or tuple of those; anything else is an OptionError naming ``what``."""
    def one(spec):
        if isinstance(spec, tuple):
            if len(spec) == 2 and isinstance(spec[1], (int, float)) and not isinstance(spec[1], bool):
                return (path_argument(spec[0], what), spec[1])
            raise OptionError(f"{what}: {spec!r} is not a (path, weight) pair")
        return str(path_argument(spec, what))
    if style is None:
        return []
    if isinstance(style, (str, os.PathLike)) or (isinstance(style, tuple) and len(style) == 2
                                                 and isinstance(style[1], (int, float))):
        return [one(style)]
    if isinstance(style, (list, tuple)):
        return [one(spec) for spec in style]
    raise OptionError(f"{what}: {style!r} is not a path, a (path, weight) pair or a list of them")


def _styles(style, what: str, optional: bool = False, budget: int | None = None) -> list[tuple[Path, float]]:
    specs = _style_specs(style, what)
    if not specs and not optional:
        raise OptionError(f"{what}: give at least one image" + ("" if what == "example" else
                          " (or, with --method fast, --builtin-style N)"))
    out = []
    for spec in specs:
        path, weight = spec if isinstance(spec, tuple) else parse_style(str(spec))
        if is_hstyle(path):
            if what == "example":
                raise OptionError(f"example: {str(path)!r} is a fitted style; a texture takes example images")
            load_fitted(path, what)
        else:
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
        content_path = path_argument(content, "content")
        cw, ch = io.check_decodes(content_path, "content", budget)
    styles = _styles(style, "example" if texture else "--style", styles_optional, budget)
    if size is None:
        if texture:
            raise OptionError("--size: a texture needs a size, e.g. --size 2048x2048")
        width, height = cw, ch
    else:
        width, height = parse_size(size, dpi=dpi)
    out = check_output_path(path_argument(output, "-o"), overwrite) if output is not None else None
    return Job(content_path, styles, width, height, out, texture, bool(overwrite))


def check_masks(masks, keep, n_styles: int, width: int, height: int, budget: int | None,
                texture: bool = False) -> Masks:
    """The masks checked before any work: no more masks than styles, each a gray image that
    decodes, of the output's aspect (within 1%), covering something; the keep mask not the whole
    frame.  Errors are one line naming the flag and the file."""
    masks = mask_list(masks)
    check_mask_count(len(masks), n_styles, texture, keep is not None)
    checked = []
    for name, value in [("--mask", m) for m in masks] + ([("--keep", keep)] if keep is not None else []):
        path = path_argument(value, name)
        w, h = io.check_decodes(path, name, budget)
        if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
            raise InputError(f"{name}: {str(path)!r} is {w}x{h} px, aspect {w / h:.3f}, and the output is "
                             f"{width}x{height}, aspect {width / height:.3f}; a mask must have the output's shape "
                             "(within 1%): draw it over the photo, or resize it")
        if not io.is_gray(path, name):
            raise InputError(f"{name}: {str(path)!r} is a colour image; a mask is gray (white: the region, black: "
                             "not, gray: partly): save it as grayscale")
        small = load_mask(path, *_small(w, h))
        if not small.any():
            raise InputError(f"{name}: {str(path)!r} is black everywhere, so it "
                             + ("gives its style no pixels" if name == "--mask" else "keeps nothing")
                             + "; white marks the region (invert the mask?)")
        if name == "--keep" and small.min() == 255:
            raise InputError(f"--keep: {str(path)!r} is white everywhere: it keeps the whole photo and leaves "
                             "nothing to stylise; white marks only what stays photographic")
        checked.append(path)
    return Masks(tuple(checked[:len(masks)]), checked[len(masks)] if keep is not None else None)


def mask_list(masks) -> list:
    """The masks argument as a list: None, one path (str or os.PathLike) or a list or tuple of them;
    anything else is an OptionError (each path itself is checked by ``path_argument``)."""
    if masks is None:
        return []
    if isinstance(masks, (str, os.PathLike)):
        return [masks]
    if isinstance(masks, (list, tuple)) and all(isinstance(m, (str, os.PathLike)) for m in masks):
        return list(masks)
    raise OptionError(f"masks: {masks!r} is not a mask's path or a list of paths; give a str or os.PathLike "
                      "(or a list of them), the i-th for the i-th style")


def check_mask_count(n_masks: int, n_styles: int, texture: bool, keep: bool, where: str = "--mask") -> None:
    """As many masks as styles at most (each pairs with the style of its position), none for a texture."""
    if n_masks > n_styles:
        raise OptionError(f"{where}: {n_masks} masks for {n_styles} style(s); each mask pairs with the style "
                          "of its position, so give at most one per style")
    if texture and (n_masks or keep):
        raise OptionError(f"{where}: style regions are for renders; a texture takes its examples over the whole frame")


def _small(width: int, height: int, side: int = 512) -> tuple[int, int]:
    s = min(1.0, side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def builtin_only(settings: Settings) -> bool:
    """A fast render with a built-in style needs no style image."""
    return settings.method == "fast" and settings.builtin_style is not None


def with_network(settings: Settings) -> Settings:
    """``settings`` with ``network = auto`` resolved (vgg19 when its weights are found, else hybrid),
    so that every level, the plan and the work key name the network the render uses."""
    from hires.engine.nets import resolve_network
    return settings.replace(network=resolve_network(settings.network, settings.weights))


def output_mode(job: Job, settings: Settings) -> str:
    """``color`` or ``gray``: ``auto`` is gray when every input image is (a gray example gives a gray
    texture, not the random network's colour speckle)."""
    if settings.mode != "auto":
        return settings.mode
    inputs = [src for _, src, _ in image_sources(job.styles)] + ([job.content] if job.content else [])
    return "gray" if all(io.is_gray(p) for p in inputs) else "color"


# A texture's whole-frame level is sized so the example appears there at about this long side: its
# largest structures (a brick, a plank: up to about a quarter of a typical example) are then
# 64 px, inside the deepest layer's receptive field (relu5_1: about 200 px) and 16x16 cells of it,
# while the frame holds as many repeats as the finished texture will
EXAMPLE_AT_BASE = 256
PATCH_START_SCALE = 2
# The patch start is not optimised (about 12 us a pixel against minutes for an optimised level), so
# it may be made larger than --base-size, up to this many times: at 8192 px from a 1024 px example
# it lays the example out at 2048 px, where the noise start's 512 px level shrinks it to 64 px, too
# small for 8 px patches to hold its shapes
PATCH_BASE_FACTOR = 4


def texture_settings(job: Job, settings: Settings, natives: list[tuple[int, int]]) -> Settings:
    """A texture's whole-frame level is no larger than ``base_size`` and no larger than needed to show
    the example at about EXAMPLE_AT_BASE px (coarser is cheaper, and a level where the example is
    smaller than that cannot lay its structures out anyway); from noise, it is optimised.

    The patch start (hires.engine.patchstart) lays it out instead, at twice that (its stones' mortar crisp,
    not upsampled from a 256 px layout; in seconds; up to PATCH_BASE_FACTOR x ``base_size``), and it
    is not optimised: from there it only blurred the shapes.  Each finer level takes the iterations
    and layers the noise start's schedule gives a level of its size, so no size costs more than from
    noise."""
    example_long = max(max(w, h) for w, h in natives) * settings.example_scale
    out_long = max(job.width, job.height)

    def sized(shown: int, cap: int) -> Settings:
        ideal = math.ceil(out_long * shown / example_long)
        return settings.replace(init="noise", base_size=max(64, min(cap, ideal)))
    noise = sized(EXAMPLE_AT_BASE, settings.base_size)
    if settings.start != "patch":
        return noise
    # (at most half the texture: its last level is always refined, from the start's shapes)
    patch = sized(EXAMPLE_AT_BASE * PATCH_START_SCALE, min(settings.base_size * PATCH_BASE_FACTOR, out_long // 2))
    n = len(schedule(job.width, job.height, patch))
    if n == 1:   # the whole texture is the one level: it is refined
        return patch
    finer = len(schedule(job.width, job.height, noise)) - n   # 1 where the patch start's base is the larger
    patch = patch.replace(iterations=(0, *(settings.level_iterations(k + finer) for k in range(1, n))))
    from hires.core.layers import keep_rank
    from hires.engine.nets import resolve_network
    network = resolve_network(settings.network, settings.weights)
    kept = sorted(settings.layers_for(network)[0], key=lambda name: keep_rank(name, network))
    drop = min(finer, max(0, len(kept) - settings.min_style_layers))   # (pyramid.schedule's order)
    return patch.replace(style_layers=tuple(kept[:len(kept) - drop])) if drop else patch


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


def settle(job: Job, settings: Settings) -> Settings:
    """The settings a run of ``job`` uses: its network named, and a texture's whole-frame level and
    schedule sized to its examples (texture_settings).  Applied once: a texture's settled
    ``base_size`` is its level's size, not the user's cap, and the patch start's may be 4x it."""
    settings = with_network(settings)
    if job.texture:
        settings = texture_settings(job, settings, [io.image_size(src, "style") for _, src, _ in image_sources(job.styles)])
    return settings


def plan_job(job: Job, settings: Settings, calibrate: bool = False) -> Plan:
    """The plan of ``job`` with the user's ``settings`` (settled here)."""
    return plan_settled(job, settle(job, settings), calibrate)


def plan_settled(job: Job, settings: Settings, calibrate: bool = False) -> Plan:
    """The plan of ``job`` with ``settings`` as ``settle`` returned them."""
    sources = image_sources(job.styles)
    natives = [io.image_size(src, "style") for _, src, _ in sources]
    check_sizes(job, settings, [src for _, src, _ in sources], natives)
    sizes = [style_size(job, wh, job.width, job.height, settings) for wh in natives]
    plan = make_plan(job.width, job.height, settings, sizes, mask_bytes_per_px(job))
    if job.texture and settings.start == "patch":
        from hires.engine import patchstart
        first = plan.levels[0]
        peak = first.peak_bytes + patchstart.memory_bytes(first.level.width, first.level.height)
        if peak > plan.budget:   # (a --base-size of 16384 would ask 17 GB of it)
            raise BudgetError(f"--memory: {settings.memory} is too small for the patch start at "
                              f"{first.level.width}x{first.level.height}; it needs about {peak / 2**30:.2f} GiB: "
                              "lower --base-size, raise --memory or use --start noise")
        plan.levels[0] = dataclasses.replace(first, patch=True, peak_bytes=peak)
    if calibrate:
        from hires.planning import probe
        probe.calibrate(plan, settings)
    if job.texture:
        plan.notes = [n for n in [example_coverage(job, settings, natives)] if n]
    if job.masks:
        plan.notes.append(describe_regions(job))
    return plan


def mask_bytes_per_px(job: Job) -> int:
    """Bytes per output px a level's style regions hold: each mask and the keep mask as read, and
    one map per region (hires.engine.regions.Masks.maps)."""
    if not job.masks:
        return 0
    return 2 * len(job.masks.masks) + 1 + 2 * (job.masks.keep is not None)


def describe_regions(job: Job) -> str:
    """The plan's line on the style regions: each one's share of the frame and its styles."""
    regions = job.masks.regions(len(job.styles))
    shares = job.masks.shares(len(job.styles), job.width, job.height)
    parts = []
    for (name, share), region in zip(shares, regions):
        if region.name == "rest" and share < 0.005:  # every pixel under a mask
            continue
        names = ", ".join(Path(job.styles[i][0]).name for i in region.styles)
        parts.append(f"{name} {share:.0%} ({names})")
    parts += [f"kept photographic {share:.0%}" for name, share in shares[len(regions):]]
    return "regions: " + "; ".join(parts)


def check_sizes(job: Job, settings: Settings, sources: list, natives: list[tuple[int, int]]) -> None:
    """Refuse, before any work, a level or style image (``sources``, of sizes ``natives``) whose
    deepest used layer would be smaller than 2x2 (the network's 3x3 convolutions cannot pad a 1 px map)."""
    what = "example" if job.texture else "--style"
    if job.texture and settings.seamless:
        check_seamless_size(job.width, job.height, settings)
    if job.texture and settings.start == "patch":
        from hires.engine.patchstart import check_examples
        check_examples(natives, [str(p) for p in sources])
    for lv in schedule(job.width, job.height, settings):
        stride = lv.stride
        if min(lv.width, lv.height) < 2 * stride:
            raise OptionError(
                f"--size: {job.width}x{job.height} is {lv.width}x{lv.height} px at level {lv.index}, "
                f"{lv.width // stride}x{lv.height // stride} at {lv.coarsest}, and the network needs 2x2 there; "
                f"give a short side of at least {-(-2 * stride * min(job.width, job.height) // min(lv.width, lv.height))} "
                f"px or fewer --style-layers")
        for path, native in zip(sources, natives):
            sw, sh = style_size(job, native, lv.width, lv.height, settings)
            if min(sw, sh) < 2 * stride:
                scale = "example_scale" if job.texture else "style_scale"
                need = getattr(settings, scale) * 2 * stride / min(sw, sh)
                raise InputError(
                    f"{what}: {str(path)!r} ({native[0]}x{native[1]} px) is {sw}x{sh} px at level {lv.index}, "
                    f"{sw // stride}x{sh // stride} at {lv.coarsest}, and the network needs 2x2 there; "
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


def style_size(job: Job, native: tuple[int, int], width: int, height: int, settings: Settings):
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


def work_key(job: Job, settings: Settings, network: str) -> str:
    h = hashlib.sha256()
    for p in [job.content, *(p for p, _ in job.styles), *job.masks.masks, job.masks.keep]:
        if p is not None:
            st = Path(p).stat()
            h.update(f"{Path(p).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps([job.width, job.height, [w for _, w in job.styles], len(job.masks.masks), network,
                         dataclasses.asdict(settings)], default=str, sort_keys=True).encode())
    return h.hexdigest()[:16]


TEXTURE_SIZE = "512x512"  # a texture's size when neither the job nor its preset gives one


def requested_size(size, preset: str | None, texture: bool):
    """The size asked (CLI ``--size``, a job's ``size`` or ``print_size``), else the preset's, else a
    texture's default; None for a render: the content's own size."""
    from hires.core.presets import preset_table
    if size:
        return size
    preset_size = preset_table(preset).get("size") if preset else None
    return preset_size or (TEXTURE_SIZE if texture else None)


def default_output(source) -> str:
    """``NAME-hires.png`` for an input ``NAME.ext`` (a style spec's weight dropped)."""
    return f"{Path(parse_style(str(source))[0]).stem}-hires.png"
