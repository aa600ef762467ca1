"""Settings: the one place where defaults live.  The CLI flags and TOML keys derive from it."""
from __future__ import annotations

import dataclasses
import importlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from hires.errors import OptionError

# configs/ is installed as the package hires.configs, so presets work from any install
CONFIG_DIR = Path(importlib.import_module("hires.configs").__path__[0])


def _opt(default, help, choices=None, **kw):
    return field(default=default, metadata={"help": help, "choices": choices, **kw})


@dataclass
class Settings:
    """Every tunable of a render.  ``hires render --help`` lists them with these defaults."""

    # schedule
    base_size: int = _opt(512, "long side in px of the whole-frame (coarsest) level")
    iterations: tuple[int, ...] = _opt(
        (150, 40, 20, 10), "optimiser iterations per level, coarsest first; the last repeats")
    optimizer: str = _opt("lbfgs", "optimiser", choices=("lbfgs", "adam"))
    lr: float = _opt(0.02, "Adam learning rate (pixel units)")
    # losses
    style_weight: float = _opt(1.0, "weight of the style (Gram) loss")
    content_weight: float = _opt(0.3, "weight of the content loss")
    tv_weight: float = _opt(0.0, "weight of the total-variation smoothness loss")
    mean_weight: float = _opt(0.0, "weight of an extra feature mean/std match term")
    style_scale: float = _opt(1.0, "style image long side relative to the output's (bigger = larger strokes)")
    style_layers: tuple[str, ...] = _opt(
        ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "network layers matched for style")
    content_layer: str = _opt("relu4_2", "network layer matched for content")
    min_style_layers: int = _opt(
        2, "finer levels drop the deepest style layer one per level, down to this many")
    init: str = _opt("content", "start image for render", choices=("content", "noise"))
    preserve_color: str = _opt(
        "none", "keep the content's colours", choices=("none", "luminance", "histogram"))
    seed: int = _opt(0, "random seed; the same seed gives the same output")
    # network and device
    network: str = _opt("auto", "feature network (auto = vgg19 when weights are found, else random)",
                        choices=("auto", "vgg19", "random"))
    weights: str | None = _opt(None, "path to vgg19-dcbb9e9d.pth (else $HIRES_WEIGHTS or torch's hub cache)")
    pooling: str = _opt("avg", "pooling in the network", choices=("avg", "max"))
    device: str = _opt("auto", "torch device", choices=("auto", "cpu", "cuda"))
    # tiling and memory
    memory: str = _opt("4GiB", "memory budget for the whole process, e.g. 4GiB, 1500MB")
    tile_size: int = _opt(0, "tile side in px at tiled levels (0 = largest that fits --memory)")
    overlap: int = _opt(4, "px of feathered overlap on each side of a cut between tiles (wide overlaps blur)")
    margin: int = _opt(0, "px of context around each tile (0 = from the network depth)")
    canvas: str = _opt("auto", "where full-size buffers live: auto (RAM if the plan fits --memory, else "
                            "disk-backed in the work folder), ram or disk", choices=("auto", "ram", "disk"))
    second_pass: bool = _opt(False, "refine once more with the tile grid shifted by half a tile")
    work_dir: str | None = _opt(None, "folder for disk-backed canvases and resume checkpoints")
    # output
    bit_depth: int = _opt(8, "bits per channel of TIFF/PNG output", choices=(8, 16))
    dpi: float = _opt(300.0, "resolution written into the output file")
    quality: int = _opt(92, "JPEG/WebP quality")
    alpha: str = _opt("flatten", "what to do with an input alpha channel: flatten onto white",
                      choices=("flatten",))
    seamless: bool = _opt(False, "make the texture tile with itself (texture only)")

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes).validated()

    def validated(self) -> "Settings":
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise OptionError(f"--{flag(f.name)}: {value!r} is not one of {', '.join(map(str, choices))}")
        if self.base_size < 32:
            raise OptionError(f"--base-size: {self.base_size} is too small; use 32 or more (default 512)")
        if not self.iterations or any(i < 0 for i in self.iterations):
            raise OptionError(f"--iterations: {self.iterations!r} must be non-negative counts, e.g. 200,60,30")
        if self.style_scale <= 0:
            raise OptionError(f"--style-scale: {self.style_scale} must be positive, e.g. 1.0")
        if self.tile_size and self.tile_size < 64:
            raise OptionError(f"--tile-size: {self.tile_size} is too small; use 64 or more, or 0 for auto")
        if self.overlap < 0 or self.margin < 0:
            raise OptionError("--overlap and --margin must be zero or positive")
        if self.dpi <= 0:
            raise OptionError(f"--dpi: {self.dpi} must be positive, e.g. 300")
        if not 1 <= self.quality <= 100:
            raise OptionError(f"--quality: {self.quality} must be between 1 and 100")
        from hires.nets import LAYER_NAMES
        for name in (*self.style_layers, self.content_layer):
            if name not in LAYER_NAMES:
                raise OptionError(f"layer {name!r} is not a VGG19 layer; use names like relu3_1")
        parse_memory(self.memory)
        return self

    def level_iterations(self, level: int) -> int:
        return self.iterations[min(level, len(self.iterations) - 1)]


def flag(name: str) -> str:
    return name.replace("_", "-")


SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


def print_sizes() -> dict[str, tuple[int, int]]:
    """Named print sizes from configs/print_sizes.toml (or the copy inside the package)."""
    with open(CONFIG_DIR / "print_sizes.toml", "rb") as fh:
        table = tomllib.load(fh)
    return {k.lower(): (int(v[0]), int(v[1])) for k, v in table.get("sizes", {}).items()}


def parse_size(text: str, param: str = "--size") -> tuple[int, int]:
    """'6000x4500' or a named print size ('a3', 'a3-landscape') -> (width, height)."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        w, h = int(text[0]), int(text[1])
    else:
        s = str(text)
        m = SIZE_RE.match(s)
        named = print_sizes()
        if m:
            w, h = int(m.group(1)), int(m.group(2))
        elif s.strip().lower() in named:
            w, h = named[s.strip().lower()]
        else:
            names = ", ".join(sorted(named)) or "none"
            raise OptionError(f"{param}: {s!r} is not a size; write WIDTHxHEIGHT in px, e.g. 6000x4500, "
                              f"or a print size ({names})")
    if w <= 0 or h <= 0:
        raise OptionError(f"{param}: {w}x{h} must have a positive width and height, e.g. 6000x4500")
    if w * h > 2**31:
        raise OptionError(f"{param}: {w}x{h} is over 2 gigapixels; hires does not go that far yet")
    return w, h


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2, "mib": 1024**2,
          "g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}


def parse_memory(text) -> int:
    """'4GiB', '1500MB', '2g', or a byte count -> bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = re.match(r"^\s*([\d.]+)\s*([a-zA-Z]*)\s*$", str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS:
            raise OptionError(f"--memory: {text!r} is not a size; write e.g. 4GiB, 1500MB or 2g")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise OptionError(f"--memory: {text!r} must be positive, e.g. 4GiB")
    return value


def parse_style(spec: str) -> tuple[str, float]:
    """'painting.jpg:0.7' -> ('painting.jpg', 0.7); 'painting.jpg' -> ('painting.jpg', 1.0)."""
    path, sep, weight = str(spec).rpartition(":")
    if sep and path and re.fullmatch(r"[\d.eE+-]+", weight):
        try:
            w = float(weight)
        except ValueError:
            raise OptionError(f"--style: weight {weight!r} in {spec!r} is not a number; write FILE:0.5") from None
        if w <= 0:
            raise OptionError(f"--style: weight {w} in {spec!r} must be positive")
        return path, w
    return str(spec), 1.0


def preset_path(name: str) -> Path:
    p = Path(name)
    if p.suffix == ".toml" and p.exists():
        return p
    q = CONFIG_DIR / f"{name}.toml"
    if q.exists():
        return q
    known = sorted({q.stem for q in CONFIG_DIR.glob("*.toml")} - {"print_sizes"})
    raise OptionError(f"--preset: {name!r} is neither a .toml file nor a preset ({', '.join(known)})")


def settings_from_mapping(values: dict, base: Settings | None = None, source: str = "settings") -> Settings:
    """Apply a TOML-style mapping of field names (dashes or underscores) onto ``base``."""
    base = base or Settings()
    names = {f.name: f for f in dataclasses.fields(Settings)}
    changes = {}
    for key, value in values.items():
        name = key.replace("-", "_")
        if name not in names:
            raise OptionError(f"{source}: unknown key {key!r}; known keys: {', '.join(sorted(names))}")
        default = getattr(Settings(), name)
        if isinstance(default, tuple):
            value = tuple(value) if isinstance(value, (list, tuple)) else coerce_tuple(value, default)
        changes[name] = value
    return base.replace(**changes)


def coerce_tuple(text, default: tuple):
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    kind = type(default[0]) if default else str
    try:
        return tuple(kind(t) for t in items)
    except ValueError:
        raise OptionError(f"{text!r} is not a comma-separated list of {kind.__name__}") from None


def load_preset(name: str, base: Settings | None = None) -> Settings:
    path = preset_path(name)
    try:
        with open(path, "rb") as fh:
            values = tomllib.load(fh)
    except tomllib.TOMLDecodeError as e:
        raise OptionError(f"--preset: {path} is not valid TOML: {e}") from None
    values.pop("description", None)
    return settings_from_mapping(values, base, source=str(path))
