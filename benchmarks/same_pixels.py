"""Does a change leave every pixel as it was?  Six small renders that between them pass through
every path of the engine, written as raw arrays, then compared exactly with another run's.

    python benchmarks/same_pixels.py --out /tmp/before        # with the code before a change
    python benchmarks/same_pixels.py --out /tmp/after         # ... and after it
    python benchmarks/same_pixels.py --compare /tmp/before /tmp/after

The cases: a tiled render (tiles of 128 px), a render with two style masks and a keep mask, a
seamless texture (the patch start), a fast render with a fitted style (a ``.hstyle`` of the
predictor's own numbers), a tiled render on a two-worker Dask cluster, and a studio job (its table
run through ``hires batch``, as the studio's worker runs it).  Only the public API and the command
are used, so the script runs on either side of a change that moves modules.  About 2 minutes.
"""
from __future__ import annotations

import argparse
import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np

# (this folder's distributed.py would stand in for the dask package of the same name)
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

DATA = Path(__file__).resolve().parents[1] / "hires" / "data"
CONTENT, STYLE, EXAMPLE = DATA / "chelsea.png", DATA / "vangogh_starry_night_1889.jpg", \
    DATA / "stone_bricks_ambientcg_bricks102.jpg"
SMALL = dict(iterations=(8, 4), memory="4GiB", network="hybrid", overwrite=True)
OPTIMISED = dict(SMALL, init="content")   # (from the fast start, a level this small is the fast result)


def module(name: str):
    """A hires module by its own name, wherever the package keeps it."""
    for prefix in ("", "core.", "engine.", "fast.", "planning.", "rendering.", "fit.", "studio.", "commands."):
        try:
            return importlib.import_module(f"hires.{prefix}{name}")
        except ModuleNotFoundError:
            continue
    raise ModuleNotFoundError(name)


def masks(folder: Path) -> tuple[list[Path], Path]:
    """Left and right halves (soft in the middle) and a kept disc, 256x192."""
    import pyvips
    x = np.linspace(0, 1, 256)[None, :].repeat(192, 0)
    left = np.clip((0.6 - x) * 5, 0, 1)
    yy, xx = np.mgrid[:192, :256]
    disc = ((yy - 96) ** 2 + (xx - 128) ** 2 < 40 ** 2).astype(float)
    paths = []
    for name, a in (("left", left), ("right", 1 - left), ("keep", disc)):
        path = folder / f"{name}.png"
        pyvips.Image.new_from_array((a * 255).astype(np.uint8)).cast("uchar").pngsave(str(path))
        paths.append(path)
    return paths[:2], paths[2]


def fitted_style(path: Path) -> Path:
    """A ``.hstyle`` whose numbers are the predictor's own for STYLE (no fit: the same file each run)."""
    import torch
    hstyle, magenta, stylecode, stylefit = (module(n) for n in ("hstyle", "magenta", "stylecode", "stylefit"))
    with torch.no_grad():
        norms = magenta.networks()[1].style_params(stylecode.style_bottleneck([(STYLE, 1.0)]))
    arrays = tuple((g.reshape(-1).numpy().copy(), b.reshape(-1).numpy().copy()) for g, b in norms)
    painting = hstyle.Painting(STYLE.name, "0" * 64, 1.0, stylefit.embed(STYLE))
    return hstyle.save(hstyle.FittedStyle(arrays, (painting,), {"fitted": "norms"}), path, overwrite=True)


def studio_job(out: Path) -> np.ndarray:
    """A studio job's table (content, style, output, fast method) run by ``hires batch``."""
    table = out / "job.toml"
    png = out / "studio.png"
    table.write_text(f'[[job]]\ncontent = "{CONTENT}"\nstyle = ["{STYLE}"]\noutput = "{png}"\n'
                     'size = "256x192"\nmethod = "fast"\noverwrite = true\n')
    hires_command = Path(sys.executable).with_name("hires")
    subprocess.run([str(hires_command), "batch", str(table), "-q"], check=True)
    io = module("io")
    return io.load_image(png, what="result")


def make(out: Path) -> None:
    import hires
    if out.exists() and any(out.iterdir()):   # (its files are written over: only into a folder of its own)
        sys.exit(f"--out: {out} is not empty; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    two, keep = masks(out)
    cases = {
        "tiled": lambda: hires.render(CONTENT, STYLE, size="384x288", tile_size=128, **OPTIMISED).image,
        "regions": lambda: hires.render(CONTENT, [STYLE, EXAMPLE], size="256x192", masks=two, keep=keep,
                                        **OPTIMISED).image,
        "texture": lambda: hires.texture(EXAMPLE, size="256x256", seamless=True, base_size=128,
                                         example_scale=0.25, **SMALL).image,
        "fast_hstyle": lambda: hires.render(CONTENT, str(fitted_style(out / "guess.hstyle")), size="384x288",
                                            method="fast", overwrite=True).image,
        "dask": lambda: hires.render(CONTENT, STYLE, size="384x288", tile_size=128, scheduler="local:2",
                                     **OPTIMISED).image,
        "studio": lambda: studio_job(out),
    }
    for name, make_image in cases.items():
        image = make_image()
        np.save(out / f"{name}.npy", image)
        print(name, image.shape, image.dtype, float(image.mean()), flush=True)


def compare(a: Path, b: Path) -> int:
    names = sorted(p.stem for p in a.glob("*.npy"))
    differ = 0
    for name in names:
        x, y = np.load(a / f"{name}.npy"), np.load(b / f"{name}.npy")
        same = x.shape == y.shape and np.array_equal(x, y)
        differ += not same
        print(f"{name}: {'identical' if same else 'DIFFERENT'} {x.shape}"
              + ("" if same or x.shape != y.shape else f", max |difference| {np.abs(x - y).max():.3g}"))
    return 1 if differ or not names else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path)
    ap.add_argument("--compare", nargs=2, type=Path)
    a = ap.parse_args()
    if a.compare:
        return compare(*a.compare)
    make(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
