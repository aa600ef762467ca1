"""Render at print scale and record wall time, peak RSS, per-level cost and achieved FLOP rate.

    python benchmarks/print_scale.py                       # 6000x4500, --memory 4GiB
    python benchmarks/print_scale.py --memory 2GiB --name print_6000x4500_2GiB
    python benchmarks/print_scale.py --size 1500x1125 --name quick

The render runs in a child process so that its peak RSS (the child's VmHWM, measured by the OS)
is the render's own.  Writes benchmarks/results/NAME.json and NAME.tif, and full-resolution
crops across tile boundaries plus a downscaled whole view into benchmarks/images/.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, RESULTS, data, machine, matmul_gflops, open_8bit, run_render, write_json  # noqa: E402


def crops(tif: Path, plan: dict, name: str) -> list[str]:
    """Full-resolution 512 px crops centred on tile corners (two of the last level, one of the level
    before, scaled to the output) and a 1200 px whole view."""
    out = IMAGES
    out.mkdir(parents=True, exist_ok=True)
    im = open_8bit(tif)
    last = plan["levels"][-1]
    tile, shift = last["tile"], last.get("shift", 0)  # (a seamless level's grid may be shifted)
    corners = [(shift + tile, shift + tile), (shift + 2 * tile, shift + 3 * tile)]
    before = plan["levels"][-2] if len(plan["levels"]) > 1 else None
    if before and before["tiles"] > 1:
        f = im.width // before["width"]
        at = (before.get("shift", 0) + before["tile"]) * f
        corners.append((at, at))
    files = []
    im.thumbnail_image(1200).jpegsave(str(out / f"{name}_whole.jpg"), Q=90)
    files.append(f"{name}_whole.jpg")
    for i, (cy, cx) in enumerate(corners):
        if cy >= im.height or cx >= im.width:
            continue
        y0, x0 = max(0, cy - 256), max(0, cx - 256)
        im.crop(x0, y0, min(512, im.width - x0), min(512, im.height - y0)).pngsave(
            str(out / f"{name}_crop{i}_at_{cx}x{cy}.png"))
        files.append(f"{name}_crop{i}_at_{cx}x{cy}.png")
    return files


def seam_ratios(tif: Path, plan: dict, band: int = 8, wrap: bool = False) -> dict:
    """Per tiled level, two measures along its cuts (scaled to the output; with ``wrap`` the cut at
    0 too, where a seamless texture wraps): ``band``, the mean gradient magnitude in +-``band`` px
    bands over that of the rest of the image (1.0: the cuts cannot be told from anywhere else; below
    1 blurred, above hard), and ``line``, the largest brightness step along a cut over the usual one
    (about 1; 2 or more is a line the whole way along it), and ``soft``, the largest deviation of
    the row and column means within 16 level px of a cut, in standard deviations of it anywhere
    (up to about 3; 4 or more is a soft band along the cut)."""
    import numpy as np
    import pyvips

    from hires.engine.seams import band_ratio, line_ratio, soft_band
    from hires.engine.tiles import grid
    im = pyvips.Image.new_from_file(str(tif))
    a = np.ndarray(buffer=im.write_to_memory(), dtype=np.uint8 if im.format == "uchar" else np.uint16,
                   shape=(im.height, im.width, im.bands))
    out = {}  # (the measures read the integer pixels strip by strip, as float)
    for lv in plan["levels"]:
        if lv["tiles"] < 2:
            continue
        f = im.width // lv["width"]
        tiles = grid(lv["width"], lv["height"], lv["tile"], lv.get("overlap", 4), lv["margin"], wrap,
                     shift=lv.get("shift", 0))
        rows, cols = {t.core[0] * f % im.height for t in tiles}, {t.core[2] * f % im.width for t in tiles}
        inner_rows, inner_cols = rows - {0}, cols - {0}
        lines = (rows, cols) if wrap else (inner_rows, inner_cols)
        out[f"level{lv['level']}"] = {"band": round(band_ratio(a, inner_rows, inner_cols, band), 4),
                                      "line": round(line_ratio(a, *lines, band), 3),
                                      "soft": round(soft_band(a, *lines, 16 * f), 2)}
    return out


def estimates(result: dict) -> dict:
    """Per optimised level, the plan's estimate beside the measured time, and where the time went: the
    multi-scale start it painted (estimated and measured), the rest of its set-up (style statistics,
    content, start), its tiles."""
    by_phase = result.get("seconds_by_phase") or {}
    out = {}
    for lv, lp in zip(result["levels"], result["plan"].get("levels", [])):
        if not lv["wall_s"] or lp.get("est_seconds") is None:
            continue
        i = lv["level"]
        out[f"level{i}"] = {"wall_s": round(lv["wall_s"], 1), "est_s": round(lp["est_seconds"], 1),
                            "error": round(lp["est_seconds"] / lv["wall_s"] - 1, 3),
                            "paint_s": round(lv.get("paint_s", 0.0), 1),
                            "est_paint_s": round(lp.get("est_paint_seconds") or 0.0, 1),
                            "est_parts_s": {k: round(v, 1) for k, v in (lp.get("est_parts") or {}).items()},
                            "setup_s": by_phase.get(f"level{i}_setup"), "tiles_s": by_phase.get(f"level{i}_tiles")}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="6000x4500")
    ap.add_argument("--memory", default="4GiB")
    ap.add_argument("--name", default=None)
    ap.add_argument("--content", default=str(data("contents/forest_path_2560x1600.jpg", "chelsea.png")))
    ap.add_argument("--style", default=str(data("styles/vangogh_starry_night_1889.jpg",
                                                "vangogh_starry_night_1889.jpg")))
    ap.add_argument("--set", action="append", default=[], help="extra Settings as key=json-value")
    ap.add_argument("--reanalyse", action="store_true", help="recompute seams and crops of an earlier run")
    a = ap.parse_args()
    name = a.name or f"print_{a.size}"
    output = RESULTS / f"{name}.tif"
    if a.reanalyse:
        payload = json.loads((RESULTS / f"{name}.json").read_text())
        payload["seams"] = seam_ratios(output, payload["plan"])
        payload["gallery"] = crops(output, payload["plan"], name)
        print(json.dumps(payload["seams"]))
        write_json(f"{name}.json", payload)
        return
    settings = {k: json.loads(v) for k, v in (s.split("=", 1) for s in a.set)}
    # a benchmark measures a render from scratch: drop the checkpoints an interrupted run left
    shutil.rmtree(RESULTS / f".{name}.hires-work", ignore_errors=True)
    gflops = matmul_gflops()
    args = {"kind": "render", "content": a.content, "style": a.style, "output": str(output), "size": a.size,
            "memory": a.memory, "settings": settings}
    result, wall = run_render(args)
    peak = result["peak_rss_bytes"]
    from hires.core.config import parse_memory
    w, h = map(int, a.size.lower().split("x"))
    payload = {
        "width": w, "height": h, "wall_s": round(wall, 1), "render_s": round(result["wall_s"], 1),
        "peak_rss_bytes": peak, "memory_budget_bytes": parse_memory(a.memory),
        "under_budget": peak <= parse_memory(a.memory),
        "peak_rss_by_phase": result.get("peak_rss_by_phase"),
        "seconds_by_phase": result.get("seconds_by_phase"), "estimates": estimates(result),
        "tile_seconds": result.get("tile_seconds"), "eval_seconds": result.get("eval_seconds"),
        "levels": len(result["levels"]), "tiles": sum(lv["tiles"] for lv in result["levels"]),
        "matmul_gflops": round(gflops, 1),
        "achieved_gflops": round(result["net_gflop"] / result["net_s"], 1),
        "network_share_of_wall": round(result["net_s"] / result["wall_s"], 3),
        "network": result["network"], "command": " ".join(["python", "benchmarks/print_scale.py", *sys.argv[1:]]),
        "per_level": result["levels"], "plan": result["plan"], "machine": machine(),
        "content": Path(a.content).name, "style": Path(a.style).name, "settings": settings,
    }
    if "levels" in result["plan"]:  # an optimised render (--method fast has no levels, no tile seams)
        payload["gallery"] = crops(output, result["plan"], name)
        payload["seams"] = seam_ratios(output, result["plan"])
    print(json.dumps({k: v for k, v in payload.items() if k not in ("per_level", "plan")}, indent=2))
    write_json(f"{name}.json", payload)


if __name__ == "__main__":
    main()
