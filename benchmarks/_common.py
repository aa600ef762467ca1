"""Shared helpers for the benchmark scripts: paths, machine facts, a measured matmul rate."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"


def data(rel: str, bundled: str) -> Path:
    p = SHARED / rel
    return p if p.exists() else ROOT / "hires" / "data" / bundled


def matmul_gflops(n: int = 2048, repeats: int = 3) -> float:
    """fp32 matmul rate of this machine through torch (the same BLAS the network uses)."""
    import torch
    a, b = torch.rand(n, n), torch.rand(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def machine() -> dict:
    return {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
