"""This machine's measured tile costs, kept between runs so that a plan answers at once.

One JSON file in the user's cache folder (``$HIRES_CACHE_DIR``, else ``$XDG_CACHE_HOME/hires``,
else ``~/.cache/hires``), an entry per probe: the machine (CPU model, torch's CPU capability,
torch's version) and the probe (layers, optimiser, precision, tile shape) are its key, its
TileCost numbers its value.  The file is written atomically; an unreadable file, or an entry
that is not four finite numbers, none negative, counts as missing (it was written by anyone).
"""
from __future__ import annotations

import functools
import json
import math
import os
import platform
import secrets
from pathlib import Path

from hires.core.safefiles import read_regular

NAME = "tile-costs.json"


def folder() -> Path:
    explicit = os.environ.get("HIRES_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hires"


@functools.cache
def machine() -> str:
    import torch
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}|{torch.backends.cpu.get_cpu_capability()}|torch {torch.__version__}|{os.cpu_count()} cpus"


# the meaning of an entry's numbers: seconds per GFLOP of hires.core.layers' cost model, which counts
# the Gram products since version 2 (and the anti-aliased steps as one convolution); version 3
# keeps no measured set-up (probe.SHAPE_EVALS) and a tile's and an evaluation's seconds apart from
# their pixels (probe.TileCost); version 4 times relu1_1 made band by band without its activation
# (hires.engine.bandgram) at the levels that allow it
MODEL = "costs 4"


def key(*parts) -> str:
    return "|".join([machine(), MODEL, *map(str, parts)])


def load() -> dict[str, tuple[float, ...]]:
    try:
        data = json.loads(read_regular(folder() / NAME))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    good = (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0)
    return {k: tuple(v) for k, v in data.items()
            if isinstance(k, str) and isinstance(v, list) and len(v) == 4 and all(map(good, v))}


def _is_cache(path: Path) -> bool:
    try:
        return isinstance(json.loads(read_regular(path)), dict)
    except (OSError, ValueError):
        return False


def save(entries: dict[str, tuple[float, ...]]) -> None:
    """Merge ``entries`` into the file, atomically; a folder that cannot be written is no error,
    and a file of that name that is not a cache of this form (``$HIRES_CACHE_DIR`` may name any
    folder) is never replaced."""
    target = folder() / NAME
    if target.exists() and not _is_cache(target):
        return
    tmp = target.with_name(f".{NAME}.{os.getpid()}-{secrets.token_hex(4)}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        merged = {**load(), **{k: list(v) for k, v in entries.items()}}
        tmp.write_text(json.dumps(merged, indent=1))
        os.replace(tmp, target)
    except OSError:
        tmp.unlink(missing_ok=True)
