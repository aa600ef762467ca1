"""Per-layer cost of the network at the finest levels' tile shapes, beside the matmul rate.

    python benchmarks/layers.py                    # writes benchmarks/results/layers.json
    python benchmarks/layers.py --sizes 256 --repeats 1 --name layers_quick

For each convolution up to relu3_1 (the depth of the print's finest levels) and each tile size:
the forward and the backward to the input (weights frozen, as in a render) in each arithmetic
path torch offers here: fp32 NCHW, fp32 channels-last (the engine until now) and bfloat16
channels-last (oneDNN on AVX512-BF16 CPUs).  Then one whole loss evaluation of a finest-level
tile (network to relu2_1, Gram style loss at relu1_1 and relu2_1, backward) split by torch's
profiler into what its time goes to, for each path, with every large block mapped afresh (page
faults on first touch) and with freed blocks reused from the heap (``canvas.reuse_memory``).
GFLOP/s count 2 x multiply-adds of the convolutions only, as the engine's ``achieved_gflops`` does;
the fp32 and bf16 matmul rates of the same run are the yardsticks.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json  # noqa: E402

CONVS = [("conv1_1", 3, 64, 1), ("conv1_2", 64, 64, 1), ("conv2_1", 64, 128, 2), ("conv2_2", 128, 128, 2),
         ("conv3_1", 128, 256, 4)]
PATHS = {
    "fp32_nchw": (torch.float32, torch.contiguous_format),
    "fp32_channels_last": (torch.float32, torch.channels_last),
    "bf16_channels_last": (torch.bfloat16, torch.channels_last),
}


def best_of(fn, repeats: int) -> float:
    fn()  # warm up: oneDNN picks and caches its kernels on the first call of a shape
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_rate(dtype, n: int = 2048, repeats: int = 3) -> float:
    a, b = torch.rand(n, n).to(dtype), torch.rand(n, n).to(dtype)
    return 2 * n**3 / best_of(lambda: a @ b, repeats) / 1e9


def conv_row(name: str, cin: int, cout: int, stride: int, side: int, path: str, repeats: int) -> dict:
    """Forward and backward-to-input seconds of one 3x3 conv at a ``side`` px tile's resolution."""
    dtype, fmt = PATHS[path]
    h = side // stride
    conv = nn.Conv2d(cin, cout, 3, padding=1).to(dtype=dtype, memory_format=fmt).requires_grad_(False)
    x = torch.rand(1, cin, h, h, dtype=dtype).contiguous(memory_format=fmt).requires_grad_(True)
    with torch.no_grad():
        g = torch.rand_like(conv(x))
    fwd = best_of(lambda: conv(x), repeats)

    def backward():
        y = conv(x)
        t = time.perf_counter()
        y.backward(g)
        x.grad = None
        return time.perf_counter() - t

    backward()
    bwd = min(backward() for _ in range(repeats))
    flop = 2.0 * cin * cout * 9 * h * h
    return {"layer": name, "side": side, "path": path, "pixels": h * h, "gflop": flop / 1e9,
            "forward_s": fwd, "backward_input_s": bwd,
            "forward_gflops": flop / fwd / 1e9, "backward_gflops": flop / bwd / 1e9}


def interior_tile(side: int):
    """A tile whose region is ``side`` px square, cut as a print's finest level cuts its tiles (8 px
    overlap and 16 px context, each rounded to 16 px) and away from the frame's edges: its ownership
    weights are zero in the context, ramp across the overlap and are one over the core."""
    from hires.engine.tiles import grid
    tiles = grid(4 * side, 4 * side, side - 64, 8, 16)  # (ramps and context rounded to 16 px each side)
    tile = next(t for t in tiles if t.region[0] > 0 and t.region[2] > 0)
    assert tile.shape == (side, side), (tile.shape, side)
    return tile


def evaluation_profile(side: int, path: str, repeats: int, heap: bool, network: str = "random",
                       layers: tuple[str, ...] = ("relu1_1", "relu2_1")) -> dict:
    """One finest-level loss evaluation (Gram style losses at ``layers`` of ``network``, one tile of
    ``side`` px weighted as an interior tile of a print's finest level is, by ``interior_tile``;
    zero padding as inside a print) timed whole, and split by op with torch's profiler;
    with ``heap``, inside ``reuse_memory`` (freed blocks kept and reused, as the engine runs them),
    else every large block mapped afresh (as the engine did before: page faults on first touch)."""
    import contextlib

    from hires.core import layers as table
    from hires.core.canvas import return_memory_promptly, reuse_memory
    from hires.engine.losses import LayerStyleLoss, TileObjective
    from hires.engine.nets import hybrid_network, random_network
    from hires.engine.stats import Stats, make_target
    from hires.engine.tiles import ownership

    dtype = PATHS[path][0]
    net = hybrid_network() if network == "hybrid" else random_network()
    if path == "fp32_nchw":
        net.to(memory_format=torch.contiguous_format)
    net.set_precision("bf16" if dtype == torch.bfloat16 else "fp32")
    net.set_padding("zeros")
    x0 = torch.rand(1, 3, side, side)
    with torch.no_grad():
        shapes = {n: f.shape for n, f in net(x0, list(layers)).items()}
    weights = ownership(interior_tile(side), {table.LAYERS[n].stride for n in layers})
    style = {}
    for name, (_, ch, h, w) in shapes.items():
        n = h * w
        glob = Stats(np.eye(ch) * n, np.zeros(ch), n)
        target = make_target(np.eye(ch) * 0.5, np.zeros(ch))
        wmap = weights[table.LAYERS[name].stride]
        style[name] = LayerStyleLoss(glob, target, torch.from_numpy(wmap.reshape(-1, 1)), float(wmap.sum()))
    objective = TileObjective(net, list(layers), style)
    x = x0.clone().requires_grad_(True)

    def evaluate():
        objective(x).backward()
        x.grad = None

    return_memory_promptly()
    with reuse_memory() if heap else contextlib.nullcontext():
        seconds = best_of(evaluate, repeats)
    flop = 2 * table.flops_per_pixel(layers) * side * side
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof, \
            reuse_memory() if heap else contextlib.nullcontext():
        evaluate()
    ops = sorted(((e.key, e.self_cpu_time_total / 1e6) for e in prof.key_averages()), key=lambda r: -r[1])
    total = sum(s for _, s in ops)
    return {"side": side, "path": path, "network": network, "layers": list(layers),
            "memory": "heap" if heap else "mapped", "evaluation_s": seconds,
            "achieved_gflops": flop / seconds / 1e9,
            "ops": [{"op": k, "self_s": round(s, 4), "share": round(s / total, 3)} for k, s in ops[:12]]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="768,1024", help="tile sides in px, comma separated")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--paths", default=",".join(PATHS))
    ap.add_argument("--name", default="layers")
    ap.add_argument("--network", default="random", choices=("random", "hybrid"),
                    help="the network of the evaluation profiles (hybrid: at its finest levels' layers)")
    ap.add_argument("--layers", help="the evaluation's style layers (default: relu1_1,relu2_1 for random, "
                                     "relu1_1,mb3 for hybrid)")
    ap.add_argument("--no-convs", action="store_true", help="only the evaluation profiles")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # side,path,heap,repeats: one evaluation profile as JSON
    args = ap.parse_args()
    chosen = tuple((args.layers or ("relu1_1,mb3" if args.network == "hybrid" else "relu1_1,relu2_1")).split(","))
    if args.one:
        side, path, heap, repeats = args.one.split(",")
        print(json.dumps(evaluation_profile(int(side), path, int(repeats), bool(int(heap)), args.network, chosen)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    paths = args.paths.split(",")
    rates = {"fp32": matmul_rate(torch.float32), "bf16": matmul_rate(torch.bfloat16)}
    print(f"matmul: fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s", flush=True)
    rows = []
    for side in sizes if not args.no_convs else ():
        for name, cin, cout, stride in CONVS:
            for path in paths:
                r = conv_row(name, cin, cout, stride, side, path, args.repeats)
                rows.append(r)
                print(f"{side:5d} {name} {path:20s} fwd {r['forward_s']*1e3:7.1f} ms {r['forward_gflops']:6.1f} GFLOP/s"
                      f"  bwd {r['backward_input_s']*1e3:7.1f} ms {r['backward_gflops']:6.1f} GFLOP/s", flush=True)
    evaluations = []
    for side in sizes:
        for path, heap in [(p, h) for p in paths for h in (False, True)]:
            # each in a fresh process: the heap a previous configuration left behind changes the next
            one = subprocess.run([sys.executable, __file__, "--one", f"{side},{path},{int(heap)},{args.repeats}",
                                  "--network", args.network, "--layers", ",".join(chosen)],
                                 capture_output=True, text=True, check=True)
            e = json.loads(one.stdout.strip().splitlines()[-1])
            evaluations.append(e)
            print(f"{side:5d} evaluation {path:20s} {e['memory']:6s} {e['evaluation_s']:.3f} s  {e['achieved_gflops']:.1f} GFLOP/s "
                  f"({e['achieved_gflops'] / rates['fp32']:.2f} of fp32 matmul)", flush=True)
            for o in e["ops"][:6]:
                print(f"        {o['op']:40s} {o['self_s']:.3f} s  {o['share']:.0%}")
    write_json(f"{args.name}.json", {
        "machine": machine(), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "matmul_gflops": rates, "convs": rows, "evaluations": evaluations})


if __name__ == "__main__":
    main()
