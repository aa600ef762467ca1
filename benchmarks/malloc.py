"""glibc's mmap threshold, measured on the whole-frame level: hires's reuse against fixed thresholds.

    python benchmarks/malloc.py                    # writes benchmarks/results/malloc.json

Below the threshold glibc serves blocks from its heap, where freed memory stays resident; above it,
each block is mapped and unmapped, and every fresh mapping costs page faults on first touch.  A
loss evaluation allocates and frees activation-sized blocks.  hires keeps a 1 MiB threshold outside
evaluations (memory handed back promptly) and lifts it to 1 GiB inside them (``canvas.reuse_memory``).
Against that: 1 MiB, 8 MiB and 16 MiB everywhere (glibc's ``MALLOC_MMAP_THRESHOLD_``, which hires
leaves in force when set).  Each renders the same whole-frame level (512x320 from the forest photo,
init content, one tile up to relu5_1) in a child process, twice, alternating; recorded: the level's
wall and network time and the process's peak RSS.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import data, machine, run_render, write_json  # noqa: E402

THRESHOLDS = {"hires: reuse in evaluations": None, "1MiB": 1 << 20, "8MiB": 8 << 20, "16MiB": 16 << 20}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="512x320")
    ap.add_argument("--iterations", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    content = data("contents/forest_path_2560x1600.jpg", "forest_path_2560x1600.jpg")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, value in THRESHOLDS.items():
                env = os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
                if value is not None:
                    os.environ["MALLOC_MMAP_THRESHOLD_"] = str(value)
                result, wall = run_render({
                    "kind": "render", "content": str(content), "style": [str(style)],
                    "output": str(Path(tmp) / f"{r}_{value}.png"), "size": args.size, "memory": "4GiB",
                    "settings": {"init": "content", "iterations": [args.iterations]}})
                os.environ.pop("MALLOC_MMAP_THRESHOLD_", None)
                if env is not None:
                    os.environ["MALLOC_MMAP_THRESHOLD_"] = env
                level = result["levels"][0]
                runs.append({"threshold": name, "round": r, "level_s": round(level["wall_s"], 2),
                             "net_s": round(level["net_s"], 2), "peak_rss_bytes": result["peak_rss_bytes"]})
                print(f"{name:28s} round {r}: level {level['wall_s']:.1f} s, peak {result['peak_rss_bytes'] / 2**20:.0f} MiB",
                      flush=True)
    summary = {name: {"best_level_s": min(r["level_s"] for r in runs if r["threshold"] == name),
                      "peak_rss_bytes": max(r["peak_rss_bytes"] for r in runs if r["threshold"] == name)}
               for name in THRESHOLDS}
    write_json("malloc.json", {"machine": machine(), "size": args.size, "iterations": args.iterations,
                               "runs": runs, "summary": summary})


if __name__ == "__main__":
    main()
