"""Style regions at print scale: the 6000x4500 forest print with three regions beside the same
print without masks, in one run (wall time and peak RSS of each, in child processes).

    python benchmarks/regions.py                        # 6000x4500, --memory 4GiB
    python benchmarks/regions.py --size 1500x1125 --name regions_quick

The regions are drawn from the photo (centre-cropped to the print's aspect, as the render crops
it): the canopy at the top (The Starry Night), the path (kept photographic: its brown pixels,
feathered) and the rest, the trees and moss (Monet's San Giorgio Maggiore at Dusk).  The unmasked
print mixes the two paintings over the whole frame.  Writes benchmarks/results/NAME.json, the
masks and the prints into benchmarks/images/, and a 100% crop across the path's boundary.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import numpy as np
import pyvips

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, RESULTS, data, machine, open_8bit, run_render, write_json  # noqa: E402


def gray(a: np.ndarray, path: Path) -> Path:
    a = np.ascontiguousarray(np.rint(np.clip(a, 0, 1) * 255).astype(np.uint8))
    pyvips.Image.new_from_memory(a.tobytes(), a.shape[1], a.shape[0], 1, "uchar").write_to_file(str(path))
    return path


def draw_masks(content: Path, width: int, height: int, folder: Path) -> tuple[Path, Path]:
    """The canopy (top, soft) and the path (its brown, lit pixels in the lower half, feathered) of
    the photo as the render sees it, at 1600 px."""
    from scipy.ndimage import gaussian_filter

    from hires.core import io
    w = 1600
    h = round(w * height / width)
    photo = io.load_image(content, size=(w, h))
    y = np.linspace(0, 1, h)[:, None].repeat(w, 1)
    canopy = np.clip((0.42 - y) / 0.14, 0, 1)
    r, g, b = photo[..., 0], photo[..., 1], photo[..., 2]
    brown = ((r > 1.08 * g) & (r > 0.18) & (y > 0.45)).astype(np.float32)
    path = np.clip(gaussian_filter(gaussian_filter(brown, 6) * 3.0, 3), 0, 1)
    return gray(canopy, folder / "regions_mask_canopy.png"), gray(path, folder / "regions_mask_path.png")


def crop_across(tif: Path, mask: Path, name: str) -> str:
    """A 100% 768 px crop centred on the kept path's edge, low in the frame."""
    im = open_8bit(tif)
    m = pyvips.Image.new_from_file(str(mask)).resize(im.width / pyvips.Image.new_from_file(str(mask)).width)
    a = np.ndarray(buffer=m.write_to_memory(), dtype=np.uint8, shape=(m.height, m.width, m.bands))[..., 0]
    ys, xs = np.nonzero((a > 100) & (a < 160))  # the feathered edge
    if len(ys):  # the edge point nearest three quarters down the frame, where the path is wide
        i = int(np.argmin(np.abs(ys - 0.75 * im.height) + 0.2 * np.abs(xs - 0.3 * im.width)))
        cy, cx = int(ys[i]), int(xs[i])
    else:
        cy, cx = im.height // 2, im.width // 2
    x0, y0 = max(0, min(im.width - 768, cx - 384)), max(0, min(im.height - 768, cy - 384))
    im.crop(x0, y0, 768, 768).pngsave(str(IMAGES / f"{name}_crop_at_{x0}x{y0}.png"))
    return f"{name}_crop_at_{x0}x{y0}.png"


def ellipse(w: int, h: int, cx: float, cy: float, rx: float, ry: float, feather: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot((xx - cx * w) / (rx * w), (yy - cy * h) / (ry * h))
    return np.clip((1 + feather - d) / (2 * feather), 0, 1)


def gallery(long_side: int = 1024) -> list[str]:
    """The three cases at ``long_side`` px, default settings: two paintings split along a soft
    boundary (the forest's canopy and ground), a kept subject (the cat's face in a Starry Night),
    a style fading to the photo across the frame."""
    import hires
    from hires.core import io
    starry = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    wave = data("styles/hokusai_great_wave_c1831.jpg", "vangogh_starry_night_1889.jpg")
    forest = data("contents/forest_path_2560x1600.jpg", "chelsea.png")
    cat = data("contents/chelsea.png", "chelsea.png")
    cw, ch = io.image_size(cat)
    fw, fh = io.image_size(forest)
    y = np.linspace(0, 1, 400)[:, None].repeat(640, 1)
    canopy = gray(np.clip((0.45 - y) / 0.2, 0, 1), IMAGES / "gallery_mask_canopy.png")
    face = gray(ellipse(cw, ch, 0.58, 0.52, 0.3, 0.42, 0.12), IMAGES / "gallery_mask_face.png")
    x = np.linspace(0, 1, cw)[None, :].repeat(ch, 0)
    fade = gray(np.clip((x - 0.2) / 0.6, 0, 1), IMAGES / "gallery_mask_fade.png")
    cases = {"split": (forest, [starry, wave], dict(masks=[canopy]), fw, fh),
             "kept_face": (cat, [starry], dict(keep=face), cw, ch),
             "fade": (cat, [starry], dict(keep=fade), cw, ch)}
    files = []
    for name, (content, styles, regions, w, h) in cases.items():
        s = long_side / max(w, h)
        out = IMAGES / f"gallery_regions_{name}.png"
        # fast_size 512: the 1024 px level is optimised (with its regions) above the feed-forward start
        r = hires.render(content, styles, out, size=(round(w * s), round(h * s)), overwrite=True, fast_size=512,
                         **regions)
        print(name, f"{r.wall_s:.0f} s", r.plan.notes if r.plan else "")
        files.append(out.name)
    return files


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="6000x4500")
    ap.add_argument("--memory", default="4GiB")
    ap.add_argument("--name", default="regions_6000x4500")
    ap.add_argument("--gallery", action="store_true", help="the three 1024 px cases instead of the print")
    a = ap.parse_args()
    if a.gallery:
        IMAGES.mkdir(parents=True, exist_ok=True)
        print(gallery())
        return
    content = data("contents/forest_path_2560x1600.jpg", "chelsea.png")
    starry = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    monet = data("styles/monet_san_giorgio_maggiore_at_dusk_1908.jpg", "vangogh_starry_night_1889.jpg")
    width, height = map(int, a.size.lower().split("x"))
    IMAGES.mkdir(parents=True, exist_ok=True)
    canopy, path = draw_masks(content, width, height, IMAGES)
    runs = {}
    for kind, extra in (("unmasked", {}), ("regions", {"masks": [str(canopy)], "keep": str(path)})):
        output = IMAGES / f"{a.name}_{kind}.tif"
        shutil.rmtree(IMAGES / f".{output.stem}.hires-work", ignore_errors=True)
        result, wall = run_render({"kind": "render", "content": str(content), "style": [str(starry), str(monet)],
                                   "output": str(output), "size": a.size, "memory": a.memory, "settings": {},
                                   **extra})
        runs[kind] = {"wall_s": round(wall, 1), "render_s": round(result["wall_s"], 1),
                      "peak_rss_bytes": result["peak_rss_bytes"], "notes": result["plan"].get("notes", []),
                      "planned_peak_bytes": result["plan"].get("peak_bytes"), "per_level": result["levels"]}
        open_8bit(output).thumbnail_image(1200).jpegsave(str(IMAGES / f"{a.name}_{kind}_whole.jpg"), Q=90)
    from hires.core.config import parse_memory
    payload = {
        "width": width, "height": height, "memory_budget_bytes": parse_memory(a.memory), "runs": runs,
        "time_ratio": round(runs["regions"]["render_s"] / runs["unmasked"]["render_s"], 3),
        "peak_ratio": round(runs["regions"]["peak_rss_bytes"] / runs["unmasked"]["peak_rss_bytes"], 3),
        "under_budget": all(r["peak_rss_bytes"] <= parse_memory(a.memory) for r in runs.values()),
        "crop": crop_across(IMAGES / f"{a.name}_regions.tif", path, a.name),
        "command": " ".join(["python", "benchmarks/regions.py", *sys.argv[1:]]), "machine": machine(),
    }
    print({k: v for k, v in payload.items() if k != "runs"})
    write_json(f"{a.name}.json", payload)


if __name__ == "__main__":
    main()
