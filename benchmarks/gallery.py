"""A small gallery to look at: a render and a texture at screen size, plus crops of big renders.

    python benchmarks/gallery.py [NAME ...]   # writes benchmarks/results/gallery/*.png
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, data, write_json  # noqa: E402

import hires  # noqa: E402
from hires import io  # noqa: E402
from hires.config import load_preset  # noqa: E402

SETTINGS = load_preset("demo")

OUT = RESULTS / "gallery"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    times = {}
    jobs = [
        ("render_chelsea_starry_512x384", lambda o: hires.render(
            data("contents/chelsea.png", "chelsea.png"),
            data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg"), o, size="512x384", settings=SETTINGS)),
        ("render_astronaut_hokusai_512x512", lambda o: hires.render(
            data("contents/astronaut.png", "chelsea.png"),
            data("styles/hokusai_great_wave_c1831.jpg", "vangogh_starry_night_1889.jpg"), o, size="512x512", settings=SETTINGS)),
        ("texture_bricks_512x512", lambda o: hires.texture(
            data("textures/stone_bricks_ambientcg_bricks102.jpg", "stone_bricks_ambientcg_bricks102.jpg"), o,
            size="512x512", settings=SETTINGS)),
        ("texture_bark_seamless_512x512", lambda o: hires.texture(
            data("textures/bark_ambientcg_bark014.jpg", "stone_bricks_ambientcg_bricks102.jpg"), o,
            size="512x512", seamless=True, settings=SETTINGS)),
    ]
    only = set(sys.argv[1:])
    for name, job in jobs:
        if only and name not in only:
            continue
        t = time.perf_counter()
        res = job(OUT / f"{name}.png")
        times[name] = {"wall_s": round(time.perf_counter() - t, 1), "network": res.network}
        if "seamless" in name:  # 2x2 repeat shows whether the texture tiles with itself
            img = res.image
            io.save_image(np.ascontiguousarray(np.tile(img, (2, 2, 1))), OUT / f"{name}_2x2.png")
        print(name, times[name], flush=True)
    write_json("gallery.json", times)


if __name__ == "__main__":
    main()
