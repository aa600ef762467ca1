"""Shared helpers for the benchmark scripts: paths, machine facts, a measured matmul rate."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
# images a benchmark makes (renders, crops, galleries) go here, outside the repository's tree (ignored);
# the few the docs show are copied by hand into docs/images/
IMAGES = ROOT / "benchmarks" / "images"
IMAGES.mkdir(parents=True, exist_ok=True)
SHARED = ROOT.parent / "shared" / "data"
# every benchmark (and the renders it starts) probes this machine afresh: a plan's estimate is
# judged against what it measures now, not against tile costs cached by an earlier run
os.environ.setdefault("HIRES_CACHE_DIR", tempfile.mkdtemp(prefix="hires-benchmark-cache-"))


def data(rel: str, bundled: str) -> Path:
    p = SHARED / rel
    return p if p.exists() else ROOT / "hires" / "data" / bundled


def matmul_gflops(n: int = 2048, repeats: int = 3, dtype=None) -> float:
    """fp32 (or ``dtype``) matmul rate of this machine through torch (the same BLAS the network uses)."""
    import torch
    a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict:
    """What the figures of a result file depend on: the CPU, what torch makes of it (its capability,
    restricted by ATEN_CPU_CAPABILITY / ONEDNN_MAX_CPU_ISA: an emulation of a smaller CPU, said
    as such), bf16 and AMX, and this run's fp32 (and native bf16) matmul rates."""
    import torch

    from hires.core.device import bf16_supported, isa_restricted
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    restricted = {k: os.environ[k] for k in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
                  if k in os.environ}
    out = {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(),
           "python": platform.python_version(), "torch": torch.__version__,
           "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
           "avx512_bf16": "avx512_bf16" in flags, "amx": "amx_bf16" in flags,
           "isa_restricted": isa_restricted(), "restriction": restricted or None,
           "emulated": bool(restricted), "matmul_fp32_gflops": round(matmul_gflops(), 1)}
    if bf16_supported():
        out["matmul_bf16_gflops"] = round(matmul_gflops(dtype=torch.bfloat16), 1)
    return out


def open_8bit(path):
    """An image file (a 16-bit TIFF included) as pyvips 8-bit values, for crops and comparisons."""
    import pyvips
    im = pyvips.Image.new_from_file(str(path))
    return im if im.format == "uchar" else (im / 257).cast("uchar")


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


CHILD = r"""
import json, statistics, sys, time
import hires
from hires.core.canvas import peak_rss_bytes, reset_peak_rss
from hires.core.progress import LevelStarted, Note, PlanReady, Step, TileStarted, Writing
args = json.loads(sys.argv[1])
t = time.perf_counter()
# peak RSS per phase (what ran before a level's first tile, its tiles, the output): the high-water
# mark is read and started afresh at each phase's end, so a render's peak is located, not only sized
# and the seconds of each phase (a level's set-up: its style statistics, content, start and any
# multi-scale start painted; its tiles), so an estimate's error is located too
phases, seconds, phase, overall, since = {}, {}, "start", 0, t
def next_phase(name):
    global phase, overall, since
    peak = peak_rss_bytes()
    overall = max(overall, peak)
    phases[phase] = max(phases.get(phase, 0), peak)
    now = time.perf_counter()
    seconds[phase] = round(seconds.get(phase, 0) + now - since, 2)
    since = now
    if reset_peak_rss():
        phase = name
plan, tile_starts, level_ends = {}, {}, {}   # when each level's tiles started and its last ended
# each level's evaluations after a tile's first, timed from one Step to the next (an evaluation and
# the optimiser's step): their median and mean say how far the odd slow one moves the mean
evals, last_step = {}, {}
def progress(e):
    now = time.perf_counter()
    if isinstance(e, TileStarted):
        tile_starts.setdefault(e.level, []).append(now)
    if isinstance(e, Step):
        if e.iteration > 1 and last_step.get("tile") == (e.level, e.tile):
            evals.setdefault(e.level, []).append(now - last_step["t"])
        last_step.update(tile=(e.level, e.tile), t=now)
    if isinstance(e, (LevelStarted, Writing)):
        for level in tile_starts:
            level_ends.setdefault(level, now)
    if isinstance(e, PlanReady):  # (the fast method's result has no Plan: its plan comes this way)
        plan.update(e.plan)
    if isinstance(e, Note):
        print(e.text, flush=True)
    if isinstance(e, LevelStarted):
        print(f"[{time.perf_counter() - t:7.1f}s] level {e.level} {e.width}x{e.height} tiles {e.n_tiles}", flush=True)
        next_phase(f"level{e.level}_setup")
    if isinstance(e, TileStarted) and phase == f"level{e.level}_setup":
        next_phase(f"level{e.level}_tiles")
    if isinstance(e, Writing):
        next_phase("finish")
# the offline default network, whatever weights this machine has (``--set network=...`` for another)
kw = dict(size=args["size"], memory=args["memory"], progress=progress, overwrite=True,
          **{"network": "hybrid", **args["settings"]})
if args["kind"] == "texture":
    res = hires.texture(args["examples"], args["output"], **kw)
else:
    res = hires.render(args["content"], args["style"], args["output"], masks=args.get("masks"), keep=args.get("keep"), **kw)
print(json.dumps({"RESULT": {
    "network": res.network, "wall_s": res.wall_s, "net_s": res.net_s, "net_gflop": res.net_gflop,
    "peak_rss_bytes": (next_phase("end"), overall)[1], "peak_rss_by_phase": phases, "seconds_by_phase": seconds,
    "tile_seconds": {f"level{k}": [round(b - a, 2) for a, b in zip(v, v[1:] + [level_ends[k]])]
                     for k, v in tile_starts.items() if k in level_ends},
    "eval_seconds": {f"level{k}": {"n": len(v), "median": statistics.median(v), "mean": statistics.fmean(v)}
                     for k, v in evals.items() if v},
    "plan": res.plan.as_dict() if res.plan else plan,
    "levels": [vars(lv) for lv in res.levels]}}), flush=True)
"""


def run_render(args: dict) -> tuple[dict, float]:
    """A render (``args``: kind, output, size, memory, settings, and content/style or examples) in a
    child process, so its peak RSS is its own; its progress is echoed line by line.  Returns the
    child's result (wall, network time, peak RSS, plan, per-level reports) and the wall time."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], stdout=subprocess.PIPE, text=True)
    result = None
    for line in iter(proc.stdout.readline, ""):  # line by line, no read-ahead delay
        if line.startswith('{"RESULT"'):
            result = json.loads(line)["RESULT"]
        else:
            print(line, end="", flush=True)
    proc.wait()
    if proc.returncode != 0 or result is None:
        sys.exit(f"render failed with exit code {proc.returncode}")
    return result, time.perf_counter() - t
