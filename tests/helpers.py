"""Helpers shared by several test modules (one place, not imported from one test module into another)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hires.commands import cli

from conftest import data, skip_or_fail
from hires.engine.seams import band_ratio


def seam_ratio(img, cuts, band=8):
    """Mean gradient magnitude in bands along the cuts over the rest of the image (a blurred
    cut is below 1, a hard edge above)."""
    return band_ratio(img, cuts, cuts, band)


def peak_growth(fn) -> int:
    """Bytes the process's peak resident memory rose while ``fn`` ran."""
    from hires.core.canvas import peak_rss_bytes, reset_peak_rss
    if not reset_peak_rss():
        skip_or_fail("this system cannot reset the peak resident memory")
    before = peak_rss_bytes()
    fn()
    return peak_rss_bytes() - before


def batch_file(folder: Path) -> Path:
    content = data("contents/chelsea.png", "chelsea.png")
    style = data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")
    (folder / "in").mkdir()
    (folder / "in" / "photo.png").write_bytes(content.read_bytes())
    # a job that fails while it runs (a file that is there, cut short), not one refused before any runs
    (folder / "in" / "truncated.png").write_bytes(content.read_bytes()[:300])
    text = f"""
[defaults]
style = ["{style}:1.0"]
method = "fast"
fast_size = 128
size = "160x120"

[[job]]
name = "first"
content = "in/photo.png"
output = "out/first.png"

[[job]]
name = "broken"
content = "in/truncated.png"
output = "out/broken.png"

[[job]]
name = "third"
content = "in/photo.png"
output = "out/third.jpg"
strength = 0.5
"""
    (folder / "out").mkdir()
    path = folder / "jobs.toml"
    path.write_text(text)
    return path


def one_line(code: int, err: str, expect_code: int = 2) -> str:
    """The command ended with ``expect_code`` and exactly one line on stderr, no traceback."""
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == expect_code, (code, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def run_cli(args, capfd) -> tuple[int, str]:
    capfd.readouterr()
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as e:
        code = e.code
    return code, capfd.readouterr().err


def measured_cli(runs: list[list[str]]) -> dict:
    """``hires`` command lines run in one fresh process (tests/measured_cli.py): each one's exit code
    and stderr, and the process's peak resident memory over all of them."""
    import json
    import subprocess
    import sys
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("measured_cli.py")), json.dumps(runs)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes."""
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else b"<dir>")
            for p in sorted(folder.rglob("*"))}


def refuses(tmp_path, capfd, args, match: str, code: int = 2) -> str:
    """``args`` (an output -o in tmp_path) refused in one line matching ``match``; nothing made."""
    if args[0] in ("render", "texture", "batch") and "-q" not in args:
        args = [args[0], "-q", *args[1:]]  # (stderr: the error line only)
    before = listing(tmp_path)
    line = one_line(*run_cli(args, capfd), code)
    assert match in line, line
    assert listing(tmp_path) == before, "a file was created or lost"
    return line


def soft_maps(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Three style regions of (H, W, 3) uint8 weights: left, right, and a band between, soft edges."""
    x = np.linspace(0, 1, w)[None, :].repeat(h, 0)
    rng = np.random.default_rng(seed)
    left = np.clip((0.4 - x) / 0.15, 0, 1)
    right = np.clip((x - 0.6) / 0.15, 0, 1) * (0.7 + 0.3 * rng.random((h, w)))
    maps = np.stack([left, right, 1 - left - right], axis=-1)
    return np.rint(np.clip(maps, 0, 1) * 255).astype(np.uint8)
