"""Where a print's fine-level evaluation spends its time, part by part, beside this machine's matmul
and memory rates: what bounds the fine levels' achieved GFLOP/s.

    python benchmarks/fine_parts.py                      # writes benchmarks/results/fine_parts.json
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        python benchmarks/fine_parts.py --name fine_parts_avx2

One interior tile of the 6000x4500 print's finest level (a 912 px region: 880 px tile and its 16 px
context, layers relu1_1 and mb3, content at mb3), its loss evaluated (forward and backward) by the
engine's own objective as a render does (inside ``canvas.reuse_memory``), median of ``--repeats``:

* the whole evaluation, with relu1_1's Gram made band by band (hires.engine.bandgram) and from the whole
  activation;
* MobileNetV2 to mb3 alone, with its Gram and the content term, and relu1_1's part as the whole
  evaluation less that.

Each with its GFLOP (hires.core.layers' count: convolutions and Gram products, forward and backward) and
its rate.  The yardsticks of the same run: the fp32 matmul (2048 px, torch) and the memory rate of a
large copy (torch, 256 MiB: bytes read plus bytes written per second).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, matmul_gflops, write_json  # noqa: E402

from hires.core.canvas import reuse_memory  # noqa: E402
from hires.core.config import Settings  # noqa: E402
from hires.engine.engine import Engine, RefineJob, to_tensor  # noqa: E402
from hires.core.layers import flops_per_pixel  # noqa: E402
from hires.engine.pyramid import Level  # noqa: E402
from hires.engine.stats import Stats, make_target  # noqa: E402
from hires.engine.tiles import grid  # noqa: E402

WIDTH, HEIGHT, TILE, OVERLAP, MARGIN = 6000, 4500, 880, 8, 16
CHANNELS = {"relu1_1": 64, "mb3": 144}


def copy_rate(mib: int = 256, repeats: int = 5) -> float:
    """GB/s of bytes read plus written by a large tensor copy (the memory rate the shallow layers'
    elementwise passes and depthwise convolutions run at)."""
    a = torch.rand(mib << 18)
    b = torch.empty_like(a)
    b.copy_(a)
    best = min(_timed(lambda: b.copy_(a)) for _ in range(repeats))
    return 2 * a.numel() * 4 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


class _Unbanded(Level):
    """A level whose relu1_1 is computed as its activation, not band by band (the engine asks the
    level which layer it bands)."""
    @property
    def banded(self):
        return None


def evaluation(engine: Engine, style_layers, content_layer, banded: bool, repeats: int) -> dict:
    """Median seconds of one loss evaluation of an interior tile of the finest level."""
    level = (Level if banded else _Unbanded)(4, WIDTH, HEIGHT, 10, tuple(style_layers), content_layer)
    tiles = grid(WIDTH, HEIGHT, TILE, OVERLAP, MARGIN)
    tile = next(t for t in tiles if t.region[0] > 0 and t.region[2] > 0)
    rng = np.random.default_rng(0)
    region = rng.random((*tile.shape, 3), dtype=np.float32)
    glob = {n: Stats(np.eye(CHANNELS[n]) * 1e3, np.ones(CHANNELS[n]), 1e6) for n in level.style_layers}
    targets = {n: make_target(np.eye(CHANNELS[n]), np.ones(CHANNELS[n])) for n in level.layers}
    engine.use_level(level)
    objective = engine.objective(tile, RefineJob(level, glob, targets, (HEIGHT, WIDTH), len(tiles)), region)
    x = to_tensor(region, "cpu", torch.float32).requires_grad_(True)

    def once():
        with reuse_memory(give_back=False):
            objective(x).backward()

    once()
    seconds = statistics.median(_timed(once) for _ in range(repeats))
    # hires.core.layers counts the content layer's network but not its loss: the same count a render's
    # achieved_gflops takes (forward plus the backward to the input, twice the forward)
    gflop = 2 * flops_per_pixel(level.layers) * tile.shape[0] * tile.shape[1] / 1e9
    return {"layers": list(level.layers), "banded": level.banded if banded else None, "region": list(tile.shape),
            "seconds": round(seconds, 4), "gflop": round(gflop, 2), "gflops": round(gflop / seconds, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--name", default="fine_parts")
    a = ap.parse_args()
    engine = Engine(Settings(network="hybrid"))
    parts = {
        "whole, relu1_1 banded": (("relu1_1", "mb3"), True),
        "whole, relu1_1 from its activation": (("relu1_1", "mb3"), False),
        "MobileNetV2 to mb3, its Gram and the content term": (("mb3",), False),
    }
    rows = {label: evaluation(engine, style, "mb3", banded, a.repeats) for label, (style, banded) in parts.items()}
    mobile = rows["MobileNetV2 to mb3, its Gram and the content term"]
    for label in list(rows)[:2]:  # relu1_1's part: the whole evaluation less the MobileNetV2 one
        seconds, gflop = rows[label]["seconds"] - mobile["seconds"], rows[label]["gflop"] - mobile["gflop"]
        rows[label.replace("whole", "relu1_1's part")] = {"seconds": round(seconds, 4), "gflop": round(gflop, 2),
                                                          "gflops": round(gflop / seconds, 1)}
    for label, row in rows.items():
        print(f"{label}: {row['seconds']:.3f} s, {row['gflop']:.1f} GFLOP, {row['gflops']:.1f} GFLOP/s", flush=True)
    payload = {"command": " ".join(["python", "benchmarks/fine_parts.py", *sys.argv[1:]]),
               "matmul_fp32_gflops": round(matmul_gflops(), 1), "copy_gb_per_s": round(copy_rate(), 1),
               "parts": rows, "machine": machine()}
    print({k: payload[k] for k in ("matmul_fp32_gflops", "copy_gb_per_s")})
    write_json(f"{a.name}.json", payload)


if __name__ == "__main__":
    main()
