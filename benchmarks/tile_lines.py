"""Lines along the tile cuts of Adam's levels: how the overlaps are blended and how far Adam moves a
pixel of an overlap, four ways, on two renders.

    python benchmarks/tile_lines.py     # writes benchmarks/results/tile_lines.json

Adam divides each pixel's gradient by its own size, so a pixel in a feathered overlap, which the
loss counts at its small share, moves a full step in each tile that refines it; and the first tile
to reach an overlap has its result kept whole there (the blend's running mean has nothing else
yet), up to the edge where its pixels stop moving.  The variants: ``mean`` (hires' blend, a
running weighted mean) or ``delta`` (each tile adds its change times its window); ``plain`` (hires'
Adam, torch's steps) or ``scaled`` (each pixel's step times its blend window).

The renders: ``toy``, a 320 px photo optimised from the photo (8 Adam evaluations a tile, 16 tiles:
large changes, as from a content or noise start), and ``print``, 2000x1500 from the painted start
with a schedule that ends, as a print's does, with 10 Adam evaluations a tile (9 tiles).  Measured
at the last level's cuts and, as the control, along rows and columns half a tile away: the band
ratio and line ratio of hires.engine.seams.  Crops of 192 px around the middle crossing of two cuts, shown
at 2x, go to benchmarks/images/tile_lines_*.png.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, data, machine, write_json  # noqa: E402

import hires  # noqa: E402
from hires.core import output
from hires.engine import engine, passes  # noqa: E402
from hires.engine.adam import Adam  # noqa: E402
from hires.engine.seams import band_ratio, line_ratio  # noqa: E402
from hires.engine.tiles import blend_window  # noqa: E402

RENDERS = {
    "toy": (("contents/chelsea.png", "chelsea.png"), ("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg"),
            dict(size="320x320", tile_size=80, base_size=128, init="content", iterations=(20, 8), memory="8GiB",
                 style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layer="relu3_1")),
    # (canvas in RAM: a result returned rather than written is refused with disk buffers)
    "print": (("contents/forest_path_2560x1600.jpg", "chelsea.png"), ("styles/munch_the_scream_1893.jpg", "vangogh_starry_night_1889.jpg"),
              dict(size="2000x1500", memory="3GiB", canvas="ram", iterations=(150, 40, 10))),
}


def delta_blend(canvas, wsum, tile, window, y0, x0):
    """Each tile's change from what it read, times its window, added to the canvas."""
    H, W = canvas.shape[:2]
    ys, xs = np.arange(y0, y0 + tile.shape[0]) % H, np.arange(x0, x0 + tile.shape[1]) % W
    now = canvas[np.ix_(ys, xs)]
    canvas[np.ix_(ys, xs)] = now + window[..., None] * (tile - now)
    wsum[np.ix_(ys, xs)] += window


def scaled_adam(monkeypatch_engine):
    """Adam whose step at each pixel is times the tile's blend window there (0 on its context)."""
    current = {}
    real_refine = engine.Engine.refine_tile

    def refine_tile(self, tile, *a, **kw):
        by0, by1, bx0, bx1 = tile.blend
        ry0, rx0 = tile.region[0], tile.region[2]
        w = np.zeros(tile.shape, np.float32)
        w[by0 - ry0:by1 - ry0, bx0 - rx0:bx1 - rx0] = blend_window(tile)
        current["w"] = w
        return real_refine(self, tile, *a, **kw)

    class ScaledAdam(Adam):
        def step(self):
            import torch
            scale = torch.from_numpy(current["w"])[None, None].to(self.x.dtype)
            before = self.x.detach().clone()
            super().step()
            with torch.no_grad():
                self.x.copy_(before + (self.x - before) * scale)
    monkeypatch_engine.append((engine.Engine, "refine_tile", real_refine))
    monkeypatch_engine.append((engine, "Adam", Adam))
    engine.Engine.refine_tile = refine_tile
    engine.Adam = ScaledAdam


def measure(image: np.ndarray, tiles) -> dict:
    rows = sorted({t.core[0] for t in tiles} - {0})
    cols = sorted({t.core[2] for t in tiles} - {0})
    half = (rows[1] - rows[0]) // 2 if len(rows) > 1 else rows[0] // 2
    between_r, between_c = [r - half for r in rows], [c - half for c in cols]
    return {"band_ratio": round(band_ratio(image, rows, cols), 3),
            "control_band_ratio": round(band_ratio(image, between_r, between_c), 3),
            "line_ratio": round(line_ratio(image, rows, cols), 2),
            "control_line_ratio": round(line_ratio(image, between_r, between_c), 2)}


def crop(image: np.ndarray, tiles, name: str) -> str:
    rows = sorted({t.core[0] for t in tiles} - {0})
    cols = sorted({t.core[2] for t in tiles} - {0})
    y, x = rows[len(rows) // 2], cols[len(cols) // 2]
    part = np.ascontiguousarray(np.repeat(np.repeat(image[y - 96:y + 96, x - 96:x + 96], 2, 0), 2, 1))
    path = IMAGES / f"tile_lines_{name}.png"
    output.save_image(part, path, overwrite=True)
    return str(path.relative_to(IMAGES.parent.parent))


def main() -> None:
    runs = {}
    for render, (content, style, kw) in RENDERS.items():
        content, style = data(*content), data(*style)
        for blend in ("mean", "delta"):
            for step in ("plain", "scaled"):
                undo = [(passes, "blend_into", passes.blend_into)]
                if blend == "delta":
                    passes.blend_into = delta_blend
                if step == "scaled":
                    scaled_adam(undo)
                try:
                    t = time.perf_counter()
                    res = hires.render(content, style, **kw)
                    wall = time.perf_counter() - t
                finally:
                    for owner, name, value in undo:
                        setattr(owner, name, value)
                last = res.plan.levels[-1]
                name = f"{render}_{blend}_{step}"
                runs[name] = {"wall_s": round(wall, 1), "optimizer": last.optimizer, "tiles": len(last.tiles),
                              **measure(res.image, last.tiles), "crop": crop(res.image, last.tiles, name)}
                print(name, runs[name], flush=True)
    write_json("tile_lines.json", {"machine": machine(), "renders": {k: {"content": v[0][0], "style": v[1][0],
                                   "settings": {a: list(b) if isinstance(b, tuple) else b for a, b in v[2].items()}}
                                   for k, v in RENDERS.items()}, "runs": runs})


if __name__ == "__main__":
    main()
