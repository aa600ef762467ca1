"""The numba kernels against numpy and torch at realistic sizes (ratios from one run).

    python benchmarks/kernels.py     # writes benchmarks/results/kernels.json
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, write_json  # noqa: E402

from hires.kernels import blend_into, feather_window, gram_accumulate  # noqa: E402


def best(fn, repeats=3):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def gram_case(n, c, rng):
    f = rng.standard_normal((n, c)).astype(np.float32)
    w = rng.random(n).astype(np.float32)
    g, m = np.zeros((c, c)), np.zeros(c)

    def ours():
        g[:] = 0
        m[:] = 0
        gram_accumulate(f, w, g, m)

    f64, w64 = f.astype(np.float64), w.astype(np.float64)
    tf, tw = torch.from_numpy(f), torch.from_numpy(w)
    tf64, tw64 = tf.double(), tw.double()
    row = {"n": n, "c": c, "gflop": 2 * n * c * c / 1e9,
           "numba_s": best(ours),
           "numpy_f64_s": best(lambda: (f64 * w64[:, None]).T @ f64),
           "torch_f32_s": best(lambda: (tf * tw[:, None]).T @ tf),
           "torch_f64_s": best(lambda: (tf64 * tw64[:, None]).T @ tf64)}
    ref = (f64 * w64[:, None]).T @ f64
    ours()
    row["max_rel_err_vs_f64"] = float(np.abs(g - ref).max() / np.abs(ref).max())
    row["max_rel_err_torch_f32"] = float(np.abs(((tf * tw[:, None]).T @ tf).double().numpy() - ref).max() / np.abs(ref).max())
    return row


def blend_case(H, W, h, rng):
    canvas = rng.random((H, W, 3)).astype(np.float32)
    wsum = np.zeros((H, W), np.float32)
    tile = rng.random((h, h, 3)).astype(np.float32)
    win = feather_window(h, h, 8, 8, 8, 8)
    y0, x0 = H // 3, W // 3

    def numpy_blend():
        sl = (slice(y0, y0 + h), slice(x0, x0 + h))
        old = wsum[sl]
        new = old + win
        canvas[sl] = (canvas[sl] * old[..., None] + tile * win[..., None]) / new[..., None]
        wsum[sl] = new

    tc, tw, tt, twin = (torch.from_numpy(a) for a in (canvas, wsum, tile, win))

    def torch_blend():
        c, s = tc[y0:y0 + h, x0:x0 + h], tw[y0:y0 + h, x0:x0 + h]
        new = s + twin
        c.copy_((c * s[..., None] + tt * twin[..., None]) / new[..., None])
        s.copy_(new)

    return {"canvas": f"{W}x{H}", "tile": h,
            "numba_s": best(lambda: blend_into(canvas, wsum, tile, win, y0, x0)),
            "numpy_s": best(numpy_blend), "torch_s": best(torch_blend)}


def main():
    rng = np.random.default_rng(0)
    gram = [gram_case(1024 * 1024, 64, rng), gram_case(512 * 512, 128, rng), gram_case(256 * 256, 256, rng),
            gram_case(128 * 128, 512, rng)]
    blend = [blend_case(4500, 6000, 1024, rng), blend_case(4500, 6000, 512, rng)]
    for r in gram:
        print(f"gram n={r['n']} c={r['c']}: numba {r['numba_s']*1e3:.1f} ms, numpy f64 {r['numpy_f64_s']*1e3:.1f} ms, "
              f"torch f32 {r['torch_f32_s']*1e3:.1f} ms, torch f64 {r['torch_f64_s']*1e3:.1f} ms, "
              f"err {r['max_rel_err_vs_f64']:.1e} (torch f32 {r['max_rel_err_torch_f32']:.1e})")
    for r in blend:
        print(f"blend {r['tile']} px into {r['canvas']}: numba {r['numba_s']*1e3:.1f} ms, numpy {r['numpy_s']*1e3:.1f} ms, "
              f"torch {r['torch_s']*1e3:.1f} ms")
    write_json("kernels.json", {"gram": gram, "blend": blend, "machine": machine(),
                                "command": "python benchmarks/kernels.py"})


if __name__ == "__main__":
    main()
