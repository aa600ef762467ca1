"""A job settled and planned: the network named, a texture's whole-frame level and schedule sized to
its examples, every size checked against the network, and the plan made (hires.planning.planner).
"""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from hires.core import io
from hires.core.config import Settings, flag
from hires.core.errors import BudgetError, InputError, OptionError
from hires.engine.pyramid import schedule
from hires.fast.hstyle import image_sources
from hires.planning.planner import Plan, make_plan
from hires.rendering.request import Job



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
