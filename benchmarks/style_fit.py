"""Fitted styles against the predictor's guess and the optimised method, on photos no fit saw.

    python benchmarks/style_fit.py                                  # four paintings, 5-minute fits
    python benchmarks/style_fit.py --minutes 1 --paintings vangogh --name style_fit_quick

For each painting: ``hires style fit`` on the bundled photos in a child process (its wall time and
peak RSS; the bundled rocket photo is held out by the fit itself), then on each held-out photo (the
rocket, and the forest path photo no fit ever sees) at 1024 px: the fast method with the painting
(the predictor's vector), the fast method with the fitted style, and the optimised method (the
quality ceiling).  Each output is measured against the painting at the output's scale: the style
loss under the hybrid network's and the random VGG's statistics (hires' own loss), and a sliced
Wasserstein distance between the output's and the painting's pixel colours.  Writes
benchmarks/results/NAME.json and benchmarks/images/NAME_gallery.jpg (rows: paintings; columns:
painting, guess, fitted, optimised) and NAME_crops.jpg (the same at 100%).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyvips

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, ROOT, data, machine, write_json  # noqa: E402

PAINTINGS = {
    "vangogh": data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg"),
    "munch": ROOT.parent / "shared" / "data" / "styles" / "munch_the_scream_1893.jpg",
    "turner": ROOT / "benchmarks" / "data" / "turner_shipwreck_1805.jpg",      # not in the shared data
    "matisse": ROOT / "benchmarks" / "data" / "matisse_woman_with_a_hat_1905.jpg",  # nor this
}
HELD_OUT = {
    "rocket": ROOT / "hires" / "data" / "photos" / "rocket.jpg",  # held out by every fit on the bundled photos
    "forest": data("contents/forest_path_2560x1600.jpg", "chelsea.png"),
}

FIT_CHILD = r"""
import json, sys
from pathlib import Path
from hires.core import process; process.tune_for_rendering()
from hires.core.canvas import peak_rss_bytes
from hires.fit.fitjob import FitRequest, fit_style
from hires.fit.fitoptions import FitOptions
a = json.loads(sys.argv[1])
r = fit_style(FitRequest([a["painting"]], Path(a["output"]), None, FitOptions(minutes=a["minutes"], fitted=a["fitted"]),
                         overwrite=True))
print(json.dumps({"RESULT": {"steps": r.steps, "seconds": r.seconds, "guess": r.guess, "fitted": r.fitted,
                             "peak_rss_bytes": peak_rss_bytes()}}))
"""


def fit(painting: Path, output: Path, minutes: float, fitted: str) -> dict:
    t = time.perf_counter()
    args = json.dumps({"painting": str(painting), "output": str(output), "minutes": minutes, "fitted": fitted})
    out = subprocess.run([sys.executable, "-c", FIT_CHILD, args], capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"fit failed: {out.stderr[-2000:]}")
    result = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith('{"RESULT"')))["RESULT"]
    return {**result, "wall_s": round(time.perf_counter() - t, 1)}


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: int = 64, n: int = 20000, seed: int = 0) -> float:
    """The sliced Wasserstein distance between two images' RGB pixel sets (0..1 units): the mean over
    random directions of the 1-d distance between the projected pixels' quantiles."""
    rng = np.random.default_rng(seed)
    pa = a.reshape(-1, 3)[rng.integers(0, a.shape[0] * a.shape[1], n)]
    pb = b.reshape(-1, 3)[rng.integers(0, b.shape[0] * b.shape[1], n)]
    d = rng.standard_normal((3, directions))
    d /= np.linalg.norm(d, axis=0)
    qa, qb = np.sort(pa @ d, axis=0), np.sort(pb @ d, axis=0)
    return float(np.sqrt(((qa - qb) ** 2).mean()))


class Measures:
    """hires' style loss of an output against one painting (at the output's scale), per network."""

    def __init__(self, painting: Path, long_side: int):
        from hires.core import io
        from hires.fit.stylefit import Objective
        w, h = io.image_size(painting)
        self.painting = io.load_image(painting, long_side=min(long_side, max(w, h)))
        self.objectives = {net: Objective([(self.painting, 1.0)], 1.0, 0.0, net) for net in ("hybrid", "random")}

    def __call__(self, img: np.ndarray) -> dict:
        import torch

        from hires.fit.stylefit import fast_tensor
        out = {}
        with torch.no_grad():
            x = fast_tensor(img)
            for net, objective in self.objectives.items():
                out[f"style_{net}"] = float(objective(x, x)[0])
        out["colour_swd"] = sliced_wasserstein(img, self.painting)
        return out


def renders(photo: Path, painting: Path, fitted: Path, size: str) -> dict[str, np.ndarray]:
    import hires
    kw = dict(size=size, network="hybrid")
    out, seconds = {}, {}
    # the optimised method from a 256 px painted start (at 1024 px its default start would be the
    # whole render: sizes up to --fast-size are the fast network's): levels at 512 and 1024 px optimised
    for name, style, extra in (("guess", painting, {"method": "fast"}), ("fitted", fitted, {"method": "fast"}),
                               ("optimised", painting, {"fast_size": 256})):
        t = time.perf_counter()
        out[name] = hires.render(photo, str(style), **kw, **extra).image
        seconds[name] = round(time.perf_counter() - t, 1)
    return out, seconds


def to_vips(img: np.ndarray) -> pyvips.Image:
    u8 = np.ascontiguousarray(np.clip(np.rint(img * 255), 0, 255).astype(np.uint8))
    return pyvips.Image.new_from_memory(u8.tobytes(), u8.shape[1], u8.shape[0], 3, "uchar")


def gallery(rows: list[list[np.ndarray]], path: Path, thumb: int | None, crop: int = 320) -> None:
    """Rows of images side by side: each scaled to ``thumb`` px high, or (``thumb`` None) a 100%
    ``crop`` px square from its centre."""
    cells = []
    for row in rows:
        for img in row:
            im = to_vips(img)
            if thumb:
                im = im.resize(thumb / im.height)
            else:
                im = im.crop(max(0, (im.width - crop) // 2), max(0, (im.height - crop) // 2),
                             min(crop, im.width), min(crop, im.height))
            cells.append(im)
    width = max(im.width for im in cells)
    cells = [im.gravity("centre", width, thumb or crop, background=[255, 255, 255]) for im in cells]
    pyvips.Image.arrayjoin(cells, across=len(rows[0]), shim=6, background=[255, 255, 255]).jpegsave(str(path), Q=88)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--paintings", default=",".join(PAINTINGS))
    ap.add_argument("--fitted", default="norms")
    ap.add_argument("--size", default="1024")
    ap.add_argument("--name", default="style_fit")
    a = ap.parse_args()
    from hires.core import io
    results, rows, crops = {"machine": machine(), "minutes": a.minutes, "fitted": a.fitted, "size": a.size,
                            "paintings": {}}, [], []
    for key in a.paintings.split(","):
        painting = PAINTINGS[key]
        hs = IMAGES / f"{a.name}_{key}.hstyle"
        print(f"== {key}: fitting for {a.minutes} min", flush=True)
        entry = {"fit": fit(painting, hs, a.minutes, a.fitted), "photos": {}}
        print(json.dumps(entry["fit"]), flush=True)
        for pname, photo in HELD_OUT.items():
            w, h = io.image_size(photo)
            size = f"{int(a.size)}x{round(int(a.size) * h / w)}" if w >= h else f"{round(int(a.size) * w / h)}x{int(a.size)}"
            images, seconds = renders(photo, painting, hs, size)
            measures = Measures(painting, int(a.size))
            entry["photos"][pname] = {"size": size, "seconds": seconds,
                                      **{name: measures(img) for name, img in images.items()}}
            print(pname, json.dumps(entry["photos"][pname]), flush=True)
            if pname == "forest":
                rows.append([measures.painting, images["guess"], images["fitted"], images["optimised"]])
                crops.append([images["guess"], images["fitted"], images["optimised"]])
        results["paintings"][key] = entry
        write_json(f"{a.name}.json", results)
    gallery(rows, IMAGES / f"{a.name}_gallery.jpg", 300)
    gallery(crops, IMAGES / f"{a.name}_crops.jpg", None)
    print("wrote", IMAGES / f"{a.name}_gallery.jpg")


if __name__ == "__main__":
    main()
