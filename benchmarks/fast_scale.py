"""The fast (feed-forward) method at print scale and at display scale: wall time and peak RSS.

    python benchmarks/fast_scale.py            # writes benchmarks/results/fast_6000x4500.json

Three renders of the forest photo with The Starry Night, each in a child process so its peak RSS
(getrusage of the child) is the render's own: 6000x4500 inside --memory 1GiB with the transformer at
its default working size and then resampled, 6000x4500 with the transformer at the full output size
(--fast-size 0: tiled, with exact whole-image instance norm; ``work`` is the network steps run in
passes over the tiles, 1.0 when every tile's state was kept between the statistics passes, and
``spilled`` the states kept on disk), and 533x400.  Crops of the two print
renders go to benchmarks/images/.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, RESULTS, data, machine, write_json  # noqa: E402

CHILD = r"""
import json, sys
import hires
a = json.loads(sys.argv[1])
res = hires.render(a["content"], a["style"], a["output"], size=a["size"], memory=a["memory"], method="fast",
                   fast_size=a["fast_size"], overwrite=True)
print(json.dumps({"RESULT": {"wall_s": res.wall_s, "net_s": res.net_s, "tiles": res.fast.tiles,
                             "passes": res.fast.passes, "work": res.fast.work, "spilled": res.fast.spilled}}),
      flush=True)
"""


def run(content, style, output: Path, size: str, memory: str, fast_size: int) -> dict:
    args = dict(content=str(content), style=str(style), output=str(output), size=size, memory=memory,
                fast_size=fast_size)
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(r.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = next(json.loads(ln)["RESULT"] for ln in r.stdout.splitlines() if ln.startswith('{"RESULT"'))
    from hires.core.config import parse_memory
    return {"size": size, "fast_size": fast_size, "process_wall_s": wall, **result,
            "peak_rss_bytes": peak * 1024 if peak > before else None, "memory_budget_bytes": parse_memory(memory)}


def crop(tif: Path, name: str) -> str:
    import pyvips
    im = pyvips.Image.new_from_file(str(tif))
    out = IMAGES / f"{name}_crop.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    im.crop(im.width // 2 - 256, im.height // 2 - 256, 512, 512).pngsave(str(out))
    return str(out.relative_to(RESULTS.parent.parent))


def main() -> None:
    content = data("contents/forest_path_2560x1600.jpg", "chelsea.png")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    tmp = RESULTS / "tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    runs = {}
    # the display size first: its peak RSS is read before the larger runs raise the children's maximum
    runs["display_533x400"] = run(content, style, tmp / "fast_533.png", "533x400", "1GiB", 1024)
    for name, fast_size in (("print_default", 1024), ("print_full_size", 0)):
        tif = tmp / f"fast_{name}.tif"
        runs[name] = run(content, style, tif, "6000x4500", "1GiB", fast_size)
        runs[name]["crop"] = crop(tif, f"fast_6000x4500_{name}")
        tif.unlink()
    payload = {"machine": machine(), "content": content.name, "style": style.name, "runs": runs,
               "note": "peak_rss_bytes is the child's getrusage maximum; runs go from small to large so each "
                       "is its own (null if a run did not raise the maximum)"}
    path = write_json("fast_6000x4500.json", payload)
    print(json.dumps(payload, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
