"""Does the planner's probe need the level's own tile size?  Its TileCost at several probe sides.

    python benchmarks/probe_size.py                      # writes benchmarks/results/probe_size.json
    python benchmarks/probe_size.py --sides 960,640 --repeats 2 --name probe_size_avx2   # (with the AVX2 restriction)

For the two probes of a 6000x4500 print (the 1500 px level: relu1_1, mb3, mb6, L-BFGS in fp32;
the 3000 and 6000 px levels: relu1_1, mb3, Adam in the engine's arithmetic for Adam), each side
in turn, each repeat a fresh shape (16 px narrower), measured as ``hires.planning.probe`` measures: the
seconds per GFLOP of a tile's fixed part and of one evaluation.
Run it alone: the machine's noise is the yardstick the sides are compared against.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json  # noqa: E402

PROBES = [(("relu1_1", "mb3", "mb6"), "mb6", "lbfgs", 20), (("relu1_1", "mb3"), "mb3", "adam", 10)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sides", default="960,768,640,512")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--name", default="probe_size")
    args = ap.parse_args()

    from hires.core import process
    from hires.core.config import Settings
    from hires.engine.engine import Engine
    from hires.core.layers import flops_per_pixel
    from hires.planning.probe import _fit, _measure, _Probe
    from hires.engine.pyramid import Level
    process.tune_for_rendering()
    settings = Settings().replace(network="hybrid", seamless=False, second_pass=False)
    engine = Engine(settings)
    rng = np.random.default_rng(0)
    _Probe(engine, Level(0, 64, 64, 1, ("relu1_1",), "relu1_1"), 64, 64, rng).run(2)  # as measure_costs warms up
    sides = [int(s) for s in args.sides.split(",")]
    rows = []
    for rep in range(args.repeats):
        for layers, content, optimizer, iterations in PROBES:
            engine.use_settings(settings.replace(optimizer=optimizer))
            level = Level(2, 2000, 2000, iterations, layers, content)
            precision = engine.use_level(level)
            for side in sides:
                h, w = side, side - 32 - 16 * rep
                # (the large probe alone, its costs in proportion to its pixels)
                cost = _fit((h * w * flops_per_pixel(layers) / 1e9, _measure(_Probe(engine, level, h, w, rng))),
                            (0.0, (0.0, 0.0)))
                rows.append(dict(layers=list(layers), optimizer=optimizer, precision=precision, shape=[h, w],
                                 fixed_s_per_gflop=cost.fixed, per_eval_s_per_gflop=cost.per_eval))
                print(f"{layers[-1]:4} {optimizer:5} {precision} {h}x{w}: fixed {cost.fixed:.4f} "
                      f"per eval {cost.per_eval:.4f} s/GFLOP", flush=True)
    summary = []
    for layers, _, optimizer, _ in PROBES:
        for side in sides:
            mine = [r for r in rows if r["layers"] == list(layers) and r["shape"][0] == side]
            summary.append(dict(layers=list(layers), optimizer=optimizer, side=side,
                                per_eval_mean=statistics.fmean(r["per_eval_s_per_gflop"] for r in mine),
                                fixed_mean=statistics.fmean(r["fixed_s_per_gflop"] for r in mine)))
    path = write_json(f"{args.name}.json", dict(machine=machine(), runs=rows, by_side=summary))
    print(path)


if __name__ == "__main__":
    main()
