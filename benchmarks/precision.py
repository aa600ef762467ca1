"""bfloat16 against float32 convolutions: wall time, and the loss and look of the same render.

    python benchmarks/precision.py                 # writes benchmarks/results/precision.json

Renders the forest photo with The Starry Night at 1500x1125 (the print's first optimised level:
4 tiles, relu3_1, 20 evaluations) and a 1024 px seamless texture (5 levels up to relu5_1) once
with ``--precision fp32`` and once with ``bf16``, then scores both outputs with the same float32
network: the whole-image style loss at the last level (what the optimiser lowers; the judge is
fp32 either way, so bf16's rounding cannot flatter itself) and the mean absolute difference
between the two outputs.  Crops side by side (fp32 left) go to
benchmarks/images/precision_*.png.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, SHARED, data, machine, write_json  # noqa: E402

CASES = {
    "render_1500x1125": dict(kind="render", size="1500x1125"),
    "texture_1024_seamless": dict(kind="texture", size="1024x1024", seamless=True),
}


def score(kind: str, job_args: tuple, image: np.ndarray, settings) -> float:
    """Whole-image style loss of ``image`` at the render's last level, by a float32 engine."""
    from hires.core.canvas import Buffers
    from hires.engine.engine import Engine
    from hires.rendering.pipeline import level_targets
    from hires.rendering.request import make_job
    from hires.rendering.jobplan import plan_job, texture_settings
    from hires.core import io
    job = make_job(*job_args, texture=kind == "texture")
    s = settings.replace(precision="fp32")
    if kind == "texture":
        s = texture_settings(job, s, [io.image_size(p, "example") for p, _ in job.styles])
    lp = plan_job(job, s).levels[-1]
    engine = Engine(s)
    targets = level_targets(engine, job, s, lp, Buffers(None, False))
    return engine.style_loss(image, targets, lp.level, lp.tiles)


def main() -> None:
    import pyvips

    import hires
    from hires.core.config import Settings
    content = data("contents/forest_path_2560x1600.jpg", "forest_path_2560x1600.jpg")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    example = SHARED / "textures" / "stone_bricks_ambientcg_bricks102.jpg"
    out = {}
    for name, case in CASES.items():
        kind, size = case["kind"], case["size"]
        extra = {k: v for k, v in case.items() if k not in ("kind", "size")}
        images, rows = {}, {}
        for precision in ("fp32", "bf16"):
            t = time.perf_counter()
            if kind == "render":
                res = hires.render(str(content), str(style), size=size, network="random", precision=precision, **extra)
                job_args = (content, style, None, size)
            else:
                res = hires.texture(str(example), size=size, network="random", precision=precision, **extra)
                job_args = (None, example, None, size)
            wall = time.perf_counter() - t
            images[precision] = res.image
            settings = Settings(network="random", **extra)
            rows[precision] = {"wall_s": round(wall, 1), "net_s": round(res.net_s, 1),
                               "achieved_gflops": round(res.net_gflop / max(res.net_s, 1e-9), 1),
                               "style_loss_fp32_judge": score(kind, job_args, res.image, settings)}
            print(name, precision, rows[precision], flush=True)
        diff = float(np.abs(images["fp32"] - images["bf16"]).mean())
        h, w = images["fp32"].shape[:2]
        y, x = h // 2 - 256, w // 2 - 256
        pair = np.concatenate([images["fp32"][y:y + 512, x:x + 512], np.ones((512, 8, 3), np.float32),
                               images["bf16"][y:y + 512, x:x + 512]], axis=1)
        file = f"precision_{name}.png"
        pyvips.Image.new_from_array((pair * 255).round().astype(np.uint8)).pngsave(str(IMAGES / file))
        out[name] = {**rows, "mean_abs_difference": diff, "speedup": rows["fp32"]["wall_s"] / rows["bf16"]["wall_s"],
                     "crops": file}
        print(name, "difference", round(diff, 4), "speed-up", round(out[name]["speedup"], 2), flush=True)
    write_json("precision.json", {"machine": machine(), "cases": out})


if __name__ == "__main__":
    main()
