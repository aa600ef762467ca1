"""Which optimiser, and how many evaluations, at a fine level: the whole-image loss each reaches.

    python benchmarks/schedules.py                 # writes benchmarks/results/schedules.json
    python benchmarks/schedules.py --size 3000x2250 --name schedules_3000
    python benchmarks/schedules.py --variants lbfgs:10,adam:10 --lrs 0.005,0.01,0.02,0.05 --name schedules_lr

The print's fine levels (3000 and 6000 px) are relu2_1-deep levels of 10 evaluations per tile.
This refines one level of that kind (default: 1500x1125, the forest photo and The Starry Night,
with the print's finest-level layers and tiling for --memory 4GiB, from the default render at
half the size upsampled, exactly as the pipeline starts a level) once per variant, with the
engine: L-BFGS and Adam at equal evaluation counts (an L-BFGS "iteration" is one evaluation, so
equal counts are about equal wall time, measured), and L-BFGS at half and double the count.
Records wall time, the whole-image style loss before and after, and the mean pixel change;
full-resolution crops across a tile corner, the start then each variant left to right, go to
benchmarks/images/NAME_crop.jpg.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, RESULTS, data, machine, write_json  # noqa: E402

VARIANTS = [("lbfgs", 10), ("adam", 10), ("lbfgs", 5), ("lbfgs", 20), ("adam", 20)]
ADAM_LRS = (0.02, 0.05)


def start_image(content: Path, style: Path, size: str, precision: str) -> np.ndarray:
    """The default render at half ``size``: what the level starts from (cached for reruns)."""
    import hires
    from hires.core.config import parse_size
    w, h = parse_size(size)
    cache = RESULTS / "tmp" / f"schedules_start_{w // 2}x{h // 2}_{precision}.npy"
    if cache.exists():
        return np.load(cache)
    res = hires.render(str(content), str(style), size=f"{w // 2}x{h // 2}", network="random", precision=precision)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.save(cache, res.image)
    return res.image


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1500x1125")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--name", default="schedules")
    ap.add_argument("--variants", default=None, help="optimizer:evaluations,... (default: the list in VARIANTS)")
    ap.add_argument("--lrs", default=None, help="Adam learning rates, comma-separated (default: ADAM_LRS)")
    args = ap.parse_args()
    chosen = [(o, int(n)) for o, n in (v.split(":") for v in args.variants.split(","))] if args.variants else VARIANTS
    lrs = tuple(float(v) for v in args.lrs.split(",")) if args.lrs else ADAM_LRS

    import pyvips

    from hires.core import io
    from hires.core.canvas import Buffers
    from hires.core.config import Settings
    from hires.engine.engine import Engine
    from hires.engine.passes import PassContext, refine_pass
    from hires.engine.reports import Counters
    from hires.core.config import parse_memory
    from hires.rendering.pipeline import level_targets
    from hires.rendering.request import make_job
    from hires.rendering.jobplan import plan_job
    from hires.planning.planner import plan_level

    content = data("contents/forest_path_2560x1600.jpg", "forest_path_2560x1600.jpg")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    base = Settings(network="random", precision=args.precision)
    start = start_image(content, style, args.size, args.precision)
    job = make_job(content, style, None, args.size, texture=False)
    # the print's finest level's layers and evaluations, tiled as the planner tiles them at this size
    fine = plan_job(make_job(content, style, None, "6000x4500", texture=False), base).levels[-1].level
    level = dataclasses.replace(plan_job(job, base).levels[-1].level, style_layers=fine.style_layers,
                                content_layer=fine.content_layer, iterations=fine.iterations)
    lp = plan_level(level, base, parse_memory(base.memory), 0)
    W, H = lp.level.width, lp.level.height
    first = io.resize(start, W, H)
    engine = Engine(base)
    targets = level_targets(engine, job, base, lp, Buffers(None, False))
    loss0 = engine.style_loss(first, targets, lp.level, lp.tiles)
    print(f"level {W}x{H}, {len(lp.tiles)} tiles, {lp.level.style_layers}; style loss at the start {loss0:.4g}",
          flush=True)
    corner = (lp.tiles[0].core[1], lp.tiles[0].core[3])  # (y, x) where the first tile's core ends
    crop = (max(0, corner[0] - 256), max(0, corner[1] - 256))
    runs, crops = [], [first[crop[0]:crop[0] + 512, crop[1]:crop[1] + 512]]
    variants = [(o, n, lr) for o, n in chosen for lr in (lrs if o == "adam" else (None,))]
    for optimizer, iterations, lr in variants:
        s = base.replace(optimizer=optimizer, **({"lr": lr} if lr else {}))
        engine.use_settings(s)
        level = dataclasses.replace(lp.level, iterations=iterations)
        canvas, content_img = first.copy(), first.copy()  # above the fast start the content is the start
        t = time.perf_counter()
        for tiles in lp.passes:
            refine_pass(engine, canvas, content_img, targets, level, tiles, PassContext(Buffers(None, False), Counters()))
        seconds = time.perf_counter() - t
        loss = engine.style_loss(canvas, targets, level, lp.tiles)
        change = float(np.abs(canvas - first).mean())
        runs.append({"optimizer": optimizer, "lr": lr, "iterations": iterations, "wall_s": round(seconds, 1),
                     "style_loss": loss, "style_loss_vs_start": loss / loss0, "mean_abs_change": change})
        crops.append(canvas[crop[0]:crop[0] + 512, crop[1]:crop[1] + 512].copy())
        print(f"{optimizer:5s} lr {lr or '-':>5} x{iterations:3d}: {seconds:6.1f} s, style loss {loss:.4g} "
              f"({loss / loss0:.3f} of the start), mean change {change:.4f}", flush=True)
    out = IMAGES
    strip = np.concatenate([np.pad(c, ((0, 0), (0, 8), (0, 0)), constant_values=1.0) for c in crops], axis=1)
    pyvips.Image.new_from_array((strip * 255).round().astype(np.uint8)).jpegsave(
        str(out / f"{args.name}_crop.jpg"), Q=92)
    write_json(f"{args.name}.json", {
        "machine": machine(), "size": [W, H], "tiles": len(lp.tiles), "style_layers": list(lp.level.style_layers),
        "precision": engine.precision, "start_style_loss": loss0, "crop_at": list(crop),
        "crop_order": ["start"] + [f"{o}{'' if lr is None else f' lr {lr}'} x{n}" for o, n, lr in variants],
        "runs": runs})


if __name__ == "__main__":
    main()
