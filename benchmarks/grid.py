"""The stride grid of a feature network, measured: how much an optimised image's spectrum peaks at
the frequencies of the networks' stride lattices (period 2 and 4 px).

    python benchmarks/grid.py        # writes benchmarks/results/grid.json

The same synthesis per network: a 256 px image optimised from the content (Gram loss of
The Starry Night at its layers plus content, L-BFGS, 60 evaluations).  The measure is the power of
the change (result minus start, luminance) at each lattice frequency (fx, fy in {0, 1/4, 1/2} cycles
per px, not both 0) over the median power of the frequencies at the same radius: 1 is no grid; the
stride-2 lattice of TF's MobileNetV2 stands far above it.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import IMAGES, data, machine, write_json  # noqa: E402

from hires.core import io, output  # noqa: E402
from hires.engine.mobile import MobileFeatures  # noqa: E402
from hires.engine.nets import HybridFeatures, random_network  # noqa: E402

SIDE = 256
EVALS = 60
NETS = {
    "random VGG19 relu1_1..relu3_1": (lambda: random_network(), ("relu1_1", "relu2_1", "relu3_1"), "relu3_1"),
    "MobileNetV2, TF stride 2 (mb0, mb3, mb6)": (lambda: MobileFeatures(antialias=False), ("mb0", "mb3", "mb6"), "mb6"),
    "MobileNetV2, anti-aliased (mb0, mb3, mb6)": (lambda: MobileFeatures(), ("mb0", "mb3", "mb6"), "mb6"),
    "hybrid (relu1_1, relu2_1, mb3, mb6)": (lambda: HybridFeatures(random_network(), MobileFeatures()),
                                            ("relu1_1", "relu2_1", "mb3", "mb6"), "mb6"),
}


def gram(f: torch.Tensor) -> torch.Tensor:
    f = f.flatten(2)[0]
    return f @ f.T / f.shape[1]


def synthesise(net, layers, content_layer, content: np.ndarray, style: np.ndarray) -> np.ndarray:
    to = lambda a: torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()  # noqa: E731
    with torch.no_grad():
        targets = {n: gram(f) for n, f in net(to(style), layers).items()}
        c_feat = net(to(content), [content_layer])[content_layer]
    x = to(content).clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=EVALS, max_eval=EVALS, line_search_fn="strong_wolfe",
                            tolerance_grad=-1, tolerance_change=-1)

    def closure():
        opt.zero_grad()
        feats = net(x, (*layers, content_layer))
        loss = sum(((gram(feats[n]) - t) ** 2).sum() / (t ** 2).sum() for n, t in targets.items()) / len(layers)
        loss = loss + 0.3 * ((feats[content_layer] - c_feat) ** 2).mean() / (c_feat ** 2).mean()
        loss.backward()
        return loss

    opt.step(closure)
    return np.ascontiguousarray(x.detach().clamp(0, 1)[0].permute(1, 2, 0).numpy())


def lattice_peaks(change: np.ndarray) -> dict[str, float]:
    """Power at each lattice frequency over the median power at its radius."""
    lum = change @ np.array([0.299, 0.587, 0.114])
    power = np.abs(np.fft.fft2(lum - lum.mean())) ** 2
    n = lum.shape[0]
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    radius = np.hypot(fx, fy)
    out = {}
    for px in (0.0, 0.25, 0.5):
        for py in (0.0, 0.25, 0.5):
            if px == py == 0.0:
                continue
            r = np.hypot(px, py)
            ring = power[np.abs(radius - r) < 2.0 / n]
            at = power[int(round(py * n)) % n, int(round(px * n)) % n]
            out[f"{px:g},{py:g}"] = float(at / np.median(ring))
    return out


def main() -> None:
    torch.manual_seed(0)
    content = io.load_image(data("contents/forest_path_2560x1600.jpg", "chelsea.png"), size=(SIDE, SIDE))
    style = io.load_image(data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg"),
                          size=(SIDE, SIDE))
    results = {}
    for name, (make, layers, cl) in NETS.items():
        t = time.perf_counter()
        net = make()
        net.set_padding("reflect")
        x = synthesise(net, layers, cl, content, style)
        peaks = lattice_peaks(x - content)
        results[name] = {"peaks": peaks, "max_peak": max(peaks.values()), "wall_s": round(time.perf_counter() - t, 1)}
        print(name, round(results[name]["max_peak"], 1), {k: round(v, 1) for k, v in peaks.items()}, flush=True)
        output.save_image(x, IMAGES / f"grid_{name.split(' (')[0].split(',')[0].replace(' ', '_')}"
                      f"{'_tf' if 'TF' in name else ''}.png", overwrite=True)
    write_json("grid.json", {"machine": machine(), "side": SIDE, "evaluations": EVALS, "networks": results})


if __name__ == "__main__":
    main()
