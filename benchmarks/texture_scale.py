"""Synthesise a large seamless texture; record wall time, peak RSS, per-level cost and the wrap seam.

    python benchmarks/texture_scale.py                              # 8192x8192, --memory 4GiB
    python benchmarks/texture_scale.py --size 16384x16384           # texture_16384.json
    python benchmarks/texture_scale.py --size 1024x1024 --name quick

The texture is made in a child process so its peak RSS (VmHWM) is its own.  Writes
benchmarks/results/NAME.json (default texture_WIDTH.json) and NAME.tif, and into
benchmarks/images/ full-resolution 512 px crops: where the texture wraps (rolled by half,
so its four corners meet in the middle) and at tile corners of the last levels, plus a whole view.
``wrap_seam_ratio`` is the gradient magnitude in 8 px bands across the wrapped edges over the
rest (1.0: the wrap cannot be told from anywhere else); ``seams`` per tiled level the same along
the cuts between tiles (``band``) and the largest brightness step along a cut over the usual one
(``line``: about 1; 2 or more is a line the whole way along the cut, as the first 8192 run had).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, RESULTS, SHARED, machine, matmul_gflops, open_8bit, run_render, write_json  # noqa: E402
from print_scale import crops, seam_ratios  # noqa: E402

EXAMPLE = SHARED / "textures" / "mossy_rock_ambientcg_rock053.jpg"


def read_pixels(tif: Path):
    """The output as a numpy array of its integer pixels (8 or 16 bit), read once by libvips."""
    import numpy as np
    import pyvips
    im = pyvips.Image.new_from_file(str(tif))
    dtype = np.uint8 if im.format == "uchar" else np.uint16
    return np.ndarray(buffer=im.write_to_memory(), dtype=dtype, shape=(im.height, im.width, im.bands))


def wrap_crop(tif: Path, name: str, side: int = 512) -> str:
    """A full-resolution crop where the texture wraps: rolled by half, its corners meet in the middle."""
    im = open_8bit(tif)
    rolled = im.wrap(x=im.width // 2, y=im.height // 2)
    side = min(side, im.width, im.height)
    file = f"{name}_wrapped_corner.png"
    rolled.crop(im.width // 2 - side // 2, im.height // 2 - side // 2, side, side).pngsave(str(IMAGES / file))
    return file


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="8192x8192")
    ap.add_argument("--memory", default="4GiB")
    ap.add_argument("--name", default=None)
    ap.add_argument("--example", action="append", default=None,
                    help=f"example IMAGE[:WEIGHT], repeatable (default {EXAMPLE.name})")
    ap.add_argument("--set", action="append", default=[], help="extra Settings as key=json-value")
    ap.add_argument("--reanalyse", action="store_true", help="recompute seams and crops of an earlier run")
    a = ap.parse_args()
    w, h = map(int, a.size.lower().split("x"))
    name = a.name or f"texture_{w}" + ("" if w == h else f"x{h}")
    output = RESULTS / f"{name}.tif"
    from hires.engine.seams import wrap_seam_ratio
    if a.reanalyse:
        payload = json.loads((RESULTS / f"{name}.json").read_text())
    else:
        settings = {"seamless": True, **{k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}}
        shutil.rmtree(RESULTS / f".{name}.hires-work", ignore_errors=True)  # measured from scratch
        examples = a.example or [str(EXAMPLE)]
        gflops = matmul_gflops()
        result, wall = run_render({"kind": "texture", "examples": examples, "output": str(output), "size": a.size,
                                   "memory": a.memory, "settings": settings})
        from hires.core.config import parse_memory
        budget = parse_memory(a.memory)
        payload = {
            "width": w, "height": h, "wall_s": round(wall, 1), "render_s": round(result["wall_s"], 1),
            "peak_rss_bytes": result["peak_rss_bytes"], "memory_budget_bytes": budget,
            "under_budget": result["peak_rss_bytes"] <= budget,
            "peak_rss_by_phase": result.get("peak_rss_by_phase"),
            "levels": len(result["levels"]), "tiles": sum(lv["tiles"] for lv in result["levels"]),
            "per_level_s": {f"level{lv['level']}": round(lv["wall_s"], 1) for lv in result["levels"]},
            "matmul_gflops": round(gflops, 1),
            "achieved_gflops": round(result["net_gflop"] / max(result["net_s"], 1e-9), 1),
            "network": result["network"],
            "command": " ".join(["python", "benchmarks/texture_scale.py", *sys.argv[1:]]),
            "examples": [Path(e.split(":")[0]).name for e in examples], "settings": settings,
            "per_level": result["levels"], "plan": result["plan"], "machine": machine(),
        }
    pixels = read_pixels(output)
    payload["wrap_seam_ratio"] = round(wrap_seam_ratio(pixels), 4)
    del pixels
    payload.pop("seam_band_ratio", None)  # (the earlier runs' name for the band measure alone)
    payload["seams"] = seam_ratios(output, payload["plan"], wrap=True)
    payload["gallery"] = [wrap_crop(output, name), *crops(output, payload["plan"], name)]
    print(json.dumps({k: v for k, v in payload.items() if k not in ("per_level", "plan")}, indent=2))
    write_json(f"{name}.json", payload)


if __name__ == "__main__":
    main()
