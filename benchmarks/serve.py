"""The studio (``hires serve``) measured through its own API, the server in a process of its own.

    python benchmarks/serve.py            # all three parts, about 5 minutes on 2 cores
    python benchmarks/serve.py print      # one part, the others' results kept

1. previews: a 1024 px fast preview (the forest photo downscaled as the page does, The Scream) at ten
   strengths, each request's round trip timed (the first, which loads the network, reported apart);
2. print: a 6000x4500 fast render of the forest photo submitted to a server started with
   ``--memory 1GiB``; the resident memory of the server and of its render process sampled every 0.1 s
   (their peaks, and the peak of their sum), the job's wall time, the output's size read back;
3. live: an optimised render (draft schedule, 2048x1280, several tiles at its finest level) with the
   event stream read throughout: when each new picture of the render arrived, and how many came while
   the finest level ran.

Writes benchmarks/results/serve.json; the result images stay in a temporary folder.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import pyvips

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
from _common import data, machine, write_json  # noqa: E402
from studio import Server, events, post  # noqa: E402

PHOTO = data("contents/forest_path_2560x1600.jpg", "photos/coffee.jpg")
PAINTING = data("styles/munch_the_scream_1893.jpg", "vangogh_starry_night_1889.jpg")


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return 0


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def previews(tmp: Path) -> dict:
    server = Server(tmp / "previews")
    small = tmp / "preview.jpg"
    pyvips.Image.thumbnail(str(PHOTO), 1024).jpegsave(str(small), Q=92)
    times = []
    try:
        for strength in [1.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]:
            t0 = time.perf_counter()
            r = post(server, "/api/preview", {"content": small, "style": PAINTING}, strength=strength)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
        size = pyvips.Image.new_from_buffer(r.content, "")
    finally:
        server.stop()
    return {"preview_px": [size.width, size.height], "first_s": round(times[0], 2),
            "median_s": round(statistics.median(times[1:]), 3), "max_s": round(max(times[1:]), 3),
            "each_s": [round(t, 3) for t in times[1:]]}


def print_render(tmp: Path) -> dict:
    server = Server(tmp / "print", "--memory", "1GiB")
    peaks = {"server": 0, "render": 0, "sum": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            s = rss(server.proc.pid)
            r = sum(rss(c) for c in children(server.proc.pid))
            peaks.update(server=max(peaks["server"], s), render=max(peaks["render"], r), sum=max(peaks["sum"], s + r))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        t0 = time.perf_counter()
        r = post(server, "/api/jobs", {"content": PHOTO, "style": PAINTING}, method="fast", size="6000x4500",
                 format="tif", **{"bit-depth": 16})
        assert r.status_code == 201, r.text
        record = server.wait(r.json()["id"], timeout=1800)
        wall = time.perf_counter() - t0
        out = tmp / "print" / "jobs" / record["id"] / record["output"]
        im = pyvips.Image.new_from_file(str(out))
    finally:
        stop.set()
        sampler.join()
        server.stop()
    gib = (lambda b: round(b / 2**30, 3))
    return {"status": record["status"], "message": record["message"], "wall_s": round(wall, 1),
            "output": [im.width, im.height, im.format], "plan_peak_gib": gib(record["plan"]["peak_bytes"]),
            "job_memory_gib": gib(record["plan"]["memory_budget_bytes"]),
            "peak_server_gib": gib(peaks["server"]), "peak_render_gib": gib(peaks["render"]),
            "peak_sum_gib": gib(peaks["sum"])}


def live(tmp: Path) -> dict:
    server = Server(tmp / "live", "--memory", "2GiB")
    stream: list = []
    stamps: list = []

    def listen():
        def until(update):
            stamps.append(time.perf_counter())
            return update["status"] in ("done", "failed")
        events(server.url, stream, until, timeout=1800)
    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(0.5)
    try:
        t0 = time.perf_counter()
        r = post(server, "/api/jobs", {"content": PHOTO, "style": PAINTING}, size="2048x1280", preset="draft")
        record = server.wait(r.json()["id"], timeout=1800)
        listener.join(30)
    finally:
        server.stop()
    pictures, seen = [], None
    for update, at in zip(stream, stamps):
        p = update["progress"]
        if update.get("snapshot") and update["snapshot"] != seen:
            seen = update["snapshot"]
            pictures.append({"at_s": round(at - t0, 1), "snapshot": seen, "level": p.get("level"),
                             "tiles_done": p.get("tiles_done"), "n_tiles": p.get("n_tiles")})
    finest = record["plan"]["levels"][-1]
    during = [p for p in pictures if p["level"] == finest["level"] and "-end" not in p["snapshot"]]
    return {"status": record["status"], "wall_s": record["wall_s"], "finest_level": finest["level"],
            "finest_tiles": finest["tiles"], "pictures": pictures, "pictures_during_finest_level": len(during)}


def main() -> None:
    """The parts named on the command line (all by default), merged into the results of the others."""
    from _common import RESULTS
    earlier = RESULTS / "serve.json"
    out = json.loads(earlier.read_text()) if earlier.exists() and len(sys.argv) > 1 else {}
    out["machine"] = machine()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, part in (("previews", previews), ("print", print_render), ("live", live)):
            if len(sys.argv) > 1 and name not in sys.argv[1:]:
                continue
            out[name] = part(tmp)
            print(name, json.dumps(out[name]), flush=True)
    write_json("serve.json", out)


if __name__ == "__main__":
    main()
