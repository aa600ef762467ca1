"""A render's tiles on 1 and 2 local Dask workers: per level tiles, colours, rounds, wall time,
summed task time, idle fraction and bytes moved, beside the in-process render.

    python benchmarks/distributed.py                     # 1536x1024, tiles of 256 px
    python benchmarks/distributed.py --size 768x512 --name distributed_quick

Writes benchmarks/results/NAME.json (default distributed.json).  A round is one wave of tasks: a
colour of k tiles on N workers takes ceil(k / N) rounds.  Idle fraction = 1 - summed task time /
(workers x wall time of the level's refine passes).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# this file has the Dask package's name: its folder goes to the end of the import path, so that
# `import distributed` (in hires.engine.cluster, and in the spawned workers) finds Dask, not this file
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE] + [str(HERE)]
from _common import data, machine, write_json  # noqa: E402


def per_level(log: list[dict], workers: int) -> list[dict]:
    """The runner's log (a statistics entry, then one entry per colour of the pass it serves)
    summed per level."""
    levels: dict[int, dict] = {}
    pending_stats = []
    for e in log:
        if e["kind"] == "stats":
            pending_stats.append(e)
            continue
        lv = levels.setdefault(e["level"], {"level": e["level"], "tiles": 0, "colours": 0, "rounds": 0,
                                             "refine_wall_s": 0.0, "refine_task_s": 0.0, "stats_wall_s": 0.0,
                                             "bytes_sent": 0, "bytes_received": 0})
        for st in pending_stats:
            lv["stats_wall_s"] += st["wall_s"]
            lv["bytes_sent"] += st["bytes_sent"]
            lv["bytes_received"] += st["bytes_received"]
        pending_stats = []
        lv["tiles"] += e["tiles"]
        lv["colours"] += 1
        lv["rounds"] += math.ceil(e["tiles"] / workers)
        lv["refine_wall_s"] += e["wall_s"]
        lv["refine_task_s"] += e["task_s"]
        lv["bytes_sent"] += e["bytes_sent"]
        lv["bytes_received"] += e["bytes_received"]
    for lv in levels.values():
        lv["idle_fraction"] = round(1 - lv["refine_task_s"] / max(1e-9, workers * lv["refine_wall_s"]), 3)
        for k in ("refine_wall_s", "refine_task_s", "stats_wall_s"):
            lv[k] = round(lv[k], 2)
    return [levels[k] for k in sorted(levels)]


def main() -> None:
    import hires
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1536x1024")
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--name", default="distributed")
    ap.add_argument("--iterations", default=None, help="per level, e.g. 8,4 (default: the Settings default)")
    a = ap.parse_args()
    content = data("contents/forest_path_2560x1600.jpg", "chelsea.png")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    kw = dict(size=a.size, tile_size=a.tile, fast_size=384, network="random")
    if a.iterations:
        kw["iterations"] = a.iterations
    runs = {}
    t = time.perf_counter()
    res = hires.render(content, style, **kw)
    runs["in_process"] = {"wall_s": round(time.perf_counter() - t, 1),
                          "levels": [{"level": lv.level, "tiles": lv.tiles, "wall_s": round(lv.wall_s, 2)}
                                     for lv in res.levels]}
    print("in process", runs["in_process"]["wall_s"], flush=True)
    reference = res.image
    for workers in (1, 2):
        t = time.perf_counter()
        res = hires.render(content, style, scheduler=f"local:{workers}", **kw)
        wall = time.perf_counter() - t
        runs[f"workers_{workers}"] = {"wall_s": round(wall, 1), "levels": per_level(res.cluster, workers),
                                      "max_diff_vs_in_process": float(abs(res.image - reference).max())}
        print(workers, "worker(s)", runs[f"workers_{workers}"]["wall_s"], flush=True)
    write_json(f"{a.name}.json", {"size": a.size, "tile": a.tile, "runs": runs, "machine": machine(),
                                  "command": " ".join(["python", "benchmarks/distributed.py", *sys.argv[1:]])})


if __name__ == "__main__":
    main()
