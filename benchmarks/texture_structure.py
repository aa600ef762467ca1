"""Does a texture keep its example's shapes?  The noise start against the patch start (hires.engine.patchstart)
over the shared textures, seamless at 1024 px.

    python benchmarks/texture_structure.py [--size 1024x1024] [--only stone_bricks]   # texture_structure.json

Each texture is made in a child process (its wall time and peak RSS its own).  Measured on the
output: the wrap seam ratio (hires.engine.seams, 1.0 when the wrap cannot be told), and against the example
at the output's scale, the nearest-patch field of the output's 8x8 patches (PatchMatch, 6 sweeps,
over a 512 px window): the share of patches that are verbatim copies (RMS distance under 0.01;
among the patches that are not flat, as a flat patch is near any flat patch) and the field's
coherence (the share of neighbouring patches whose matches are neighbours too, within 1 px: copied
runs score high, an image made afresh low).  A sheet per example (example | noise start
| patch start | the patch start tiled 2x2) goes to benchmarks/images/texture_structure_NAME.jpg.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, SHARED, machine, run_render, write_json  # noqa: E402

from hires.core import io  # noqa: E402
from hires.kernels import patchmatch  # noqa: E402
from hires.engine.seams import wrap_seam_ratio  # noqa: E402

EXAMPLES = {
    "stone_bricks": "stone_bricks_ambientcg_bricks102.jpg",
    "brick_gray": "brick_gray_skimage.png",
    "bark": "bark_ambientcg_bark014.jpg",
    "mossy_rock": "mossy_rock_ambientcg_rock053.jpg",
    "gravel": "gravel_skimage.png",
    "grass": "grass_skimage.png",
}
WINDOW = 512
P = 8
CONTRAST = 0.02   # a patch's RMS deviation from its own mean below which it counts as flat


def patch_contrast(image: np.ndarray) -> np.ndarray:
    """Each PxP patch's RMS deviation from its own mean, channel by channel (summed-area tables)."""
    def box(a):
        s = np.pad(a.cumsum(0).cumsum(1), ((1, 0), (1, 0), (0, 0)))
        return s[P:, P:] - s[:-P, P:] - s[P:, :-P] + s[:-P, :-P]
    x = image.astype(np.float64)
    mean = box(x) / (P * P)
    variance = np.maximum(box(x * x) / (P * P) - mean ** 2, 0)
    return np.sqrt(variance.mean(-1))


def field_measures(image: np.ndarray, example: np.ndarray, seed: int = 0) -> dict:
    """Verbatim share and coherence of the nearest-patch field of ``image``'s central window."""
    h, w = image.shape[:2]
    y0, x0 = max(0, (h - WINDOW) // 2), max(0, (w - WINDOW) // 2)
    window = np.ascontiguousarray(image[y0:y0 + WINDOW, x0:x0 + WINDOW])
    valid = np.zeros(example.shape[:2], bool)
    valid[:example.shape[0] - P + 1, :example.shape[1] - P + 1] = True
    rng = np.random.default_rng(seed)
    shape = (window.shape[0] - P + 1, window.shape[1] - P + 1)
    field = np.stack([rng.integers(0, example.shape[0] - P + 1, shape),
                      rng.integers(0, example.shape[1] - P + 1, shape)], -1).astype(np.int64)
    field, cost = patchmatch(window, example, valid, field, P, False, sweeps=6, seed=seed)
    rms = np.sqrt(cost / (P * P * example.shape[2]))
    # a flat patch (a gray example's even stretches) is near every flat patch: copied or not, it
    # cannot be told, so only patches with some contrast count towards the verbatim share
    textured = patch_contrast(window) >= CONTRAST
    right = np.abs(field[:, 1:] - field[:, :-1] - np.array([0, 1])).max(-1) <= 1
    down = np.abs(field[1:] - field[:-1] - np.array([1, 0])).max(-1) <= 1
    return {"verbatim_share": round(float((rms[textured] < 0.01).mean()), 4),
            "textured_share": round(float(textured.mean()), 3),
            "coherence": round(float(np.concatenate([right.ravel(), down.ravel()]).mean()), 3)}


def sheet(name: str, example: np.ndarray, outputs: dict[str, np.ndarray], side: int = 384) -> str:
    import pyvips

    def tile(a):
        im = pyvips.Image.new_from_array((np.clip(a, 0, 1) * 255).astype(np.uint8))
        return im.thumbnail_image(side, height=side)
    parts = [tile(example), *(tile(o) for o in outputs.values()),
             tile(np.tile(outputs["patch"], (2, 2, 1)))]
    path = IMAGES / f"texture_structure_{name}.jpg"
    pyvips.Image.arrayjoin(parts, across=len(parts), shim=8, background=255).jpegsave(str(path), Q=90)
    return path.name


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1024x1024")
    ap.add_argument("--memory", default="4GiB")
    ap.add_argument("--only", nargs="*", default=list(EXAMPLES))
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            path = SHARED / "textures" / EXAMPLES[name]
            example = io.load_image(path, what="example")   # at --example-scale 1: its own px are the output's
            row, outputs = {}, {}
            for start in ("noise", "patch"):
                out = Path(tmp) / f"{name}_{start}.png"
                result, wall = run_render({"kind": "texture", "examples": [str(path)], "output": str(out),
                                           "size": args.size, "memory": args.memory,
                                           "settings": {"seamless": True, "start": start}})
                image = io.load_image(out, what="texture")
                outputs[start] = image
                row[start] = {"wall_s": round(wall, 1), "render_s": round(result["wall_s"], 1),
                              "peak_rss_bytes": result["peak_rss_bytes"],
                              "wrap_seam_ratio": round(wrap_seam_ratio(image), 3), **field_measures(image, example)}
                print(name, start, row[start], flush=True)
            row["sheet"] = sheet(name, example, outputs)
            results[name] = row
    write_json("texture_structure.json", {"machine": machine(), "size": [w, h], "memory": args.memory,
                                          "examples": {k: EXAMPLES[k] for k in results}, "results": results})


if __name__ == "__main__":
    main()
