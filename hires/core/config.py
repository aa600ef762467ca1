"""Settings: the one place where defaults live.  The CLI flags and TOML keys derive from it."""
from __future__ import annotations

import dataclasses
import importlib
import math
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

from hires.core.coercion import _convert, coerce_value
from hires.core.errors import OptionError
from hires.core.safefiles import read_regular

# configs/ is installed as the package hires.configs, so presets work from any install
CONFIG_DIR = Path(importlib.import_module("hires.configs").__path__[0])


ADAM_UP_TO = 10  # optimizer auto: Adam at levels of this many iterations or fewer


def _opt(default, help, choices=None, **kw):
    return field(default=default, metadata={"help": help, "choices": choices, **kw})


@dataclass
class Settings:
    """Every tunable of a render.  ``hires render --help`` lists them with these defaults."""

    # schedule
    base_size: int = _opt(512, "long side in px of the whole-frame (coarsest) level (a texture's patch start: up to "
                                "4x, never more than half the texture)")
    iterations: tuple[int, ...] = _opt(
        (150, 40, 20, 10), "optimiser iterations per level, coarsest first; the last repeats")
    optimizer: str = _opt("auto", f"optimiser; auto = L-BFGS at levels of more than {ADAM_UP_TO} iterations, Adam "
                                  f"at {ADAM_UP_TO} or fewer (too few for L-BFGS's history to pay)", choices=("auto", "lbfgs", "adam"))
    lr: float = _opt(0.05, "Adam learning rate (pixel units)")
    # losses
    style_weight: float = _opt(1.0, "weight of the style (Gram) loss")
    content_weight: float = _opt(0.3, "weight of the content loss (a texture's with the patch start: how closely "
                                      "the finer levels keep the shapes it laid out)")
    tv_weight: float = _opt(0.0, "weight of the total-variation smoothness loss")
    mean_weight: float = _opt(0.0, "weight of an extra term matching each style layer's feature mean")
    style_scale: float = _opt(1.0, "style image long side relative to the output's (bigger = larger strokes)")
    example_scale: float = _opt(
        1.0, "texture: how large the example's features appear (1.0 = one example px per output px at the "
             "finest level; 2 = twice as large, fewer repeats)")
    style_layers: tuple[str, ...] = _opt(
        (), "network layers matched for style (empty = the network's own: relu1_1,relu2_1,mb3,mb6,mb13 for "
            "hybrid, relu1_1,...,relu5_1 for vgg19 and random)", unset="the network's own")
    content_layer: str = _opt("auto", "network layer matched for content (auto = the network's own: mb10 for "
                                      "hybrid, relu4_2 for vgg19 and random)")
    min_style_layers: int = _opt(
        2, "finer levels drop the deepest style layer one per level, down to this many")
    method: str = _opt("optimise", "optimise: the pyramid engine; fast: Magenta's feed-forward network "
                       "(seconds, at --fast-size, then resampled)", choices=("optimise", "fast"))
    strength: float = _opt(1.0, "fast network: 0 keeps the content's own style, 1 takes the painting's")
    fast_size: int = _opt(1024, "fast network: long side in px it runs at (its strokes have a fixed size in "
                                "px); 0 = the output size")
    multiscale: bool = _opt(True, "fast network: above --fast-size, paint again at each doubling of the size up to "
                                  "the output's, each time over half the coarser result (strokes at every scale, "
                                  "not one size resampled); off: the --fast-size result resampled")
    builtin_style: str | None = _opt(
        None, "fast network: one of the 26 built-in styles of the multi-style network (0-25) or a blend "
              "such as 3:0.7,19:0.3, instead of the style images (all 26 are shown in docs/networks.md)",
        unset="the style images")
    init: str = _opt("fast", "start image of a render: fast (the feed-forward network's painting, multi-scale "
                             "above --fast-size), content (the photo) or noise", choices=("fast", "content", "noise"))
    preserve_color: str = _opt(
        "none", "keep the content's colors", choices=("none", "luminance", "histogram"))
    seed: int = _opt(0, "random seed; the same seed gives the same output")
    # network and device
    network: str = _opt("auto", "feature network of the optimisation: hybrid (the bundled pretrained "
                                "MobileNetV2 beside a seeded VGG19's first layers), vgg19 (pretrained, downloaded "
                                "with `hires weights fetch`) or random (a seeded VGG19); auto = vgg19 when its "
                                "weights are found, else hybrid", choices=("auto", "hybrid", "vgg19", "random"))
    weights: str | None = _opt(None, "path to vgg19-dcbb9e9d.pth", unset="$HIRES_WEIGHTS, else torch's hub cache")
    pooling: str = _opt("avg", "pooling in the network", choices=("avg", "max"))
    device: str = _opt("auto", "torch device", choices=("auto", "cpu", "cuda"))
    precision: str = _opt("auto", "arithmetic of the network's convolutions: fp32, or bf16 (bfloat16, about twice "
                                  "as fast on CPUs with AVX512-BF16 or AMX; statistics and pixels stay float32); "
                                  "auto = bf16 where the CPU has it", choices=("auto", "fp32", "bf16"))
    # tiling and memory
    memory: str = _opt("4GiB", "memory budget for the whole process, e.g. 4GiB, 1500MB")
    tile_size: int = _opt(0, "tile side in px at tiled levels (0 = largest that fits --memory)")
    overlap: int = _opt(0, "px of feathered overlap on each side of a cut between tiles (0 = from the level's "
                           "layers: twice the largest stride up to stride 4, the context margin from stride 8)")
    margin: int = _opt(0, "px of context around each tile (0 = from the network depth)")
    canvas: str = _opt("auto", "where full-size buffers live: auto (RAM if the plan fits --memory, else "
                            "disk-backed in the work folder), ram or disk", choices=("auto", "ram", "disk"))
    second_pass: bool = _opt(False, "refine once more with the tile grid shifted by half a tile")
    work_dir: str | None = _opt(None, "folder for disk-backed canvases and resume checkpoints",
                                unset=".NAME.hires-work beside the output")
    # output
    bit_depth: int = _opt(8, "bits per channel of TIFF/PNG output", choices=(8, 16))
    dpi: float = _opt(300.0, "resolution written into the output file")
    quality: int = _opt(92, "JPEG/WebP quality")
    pyramid: bool = _opt(False, "write a pyramidal TIFF (every power-of-two reduction, for viewers of huge images)")
    seamless: bool = _opt(False, "make the texture tile with itself (texture only)")
    start: str = _opt("patch", "texture: start of the whole-frame level: patch (the examples' own patches laid out "
                               "by a multi-scale patch synthesis, which keeps their shapes: stones bounded by mortar, "
                               "plates by cracks) or noise (the finer levels' statistics alone)",
                      choices=("patch", "noise"))
    variety: float = _opt(1.0, "texture, patch start: how strongly it avoids reusing a few parts of the examples "
                               "(0 = not at all: fewer seams between patches, more repeats)")
    detail: float = _opt(1.0, "texture: noise added to each finer level's start, as a fraction of the detail the "
                              "example has at that scale and the upsampled coarser level lacks (0 = none)")
    match_colors: bool = _opt(True, "texture: as a last step, give the result the examples' color mean and "
                                     "covariance (a fine level that cannot regain all the example's contrast "
                                     "otherwise comes out washed out)")
    mode: str = _opt("auto", "color or one-band gray output; auto = gray when every input image is gray",
                     choices=("auto", "color", "gray"))

    def __new__(cls, *args, **kwargs):
        # a misspelt keyword is a hires error naming it, as it is from TOML or the command line
        unknown = sorted(set(kwargs) - set(_FIELDS))
        if unknown:
            raise OptionError(f"Settings: unknown setting(s) {', '.join(map(repr, unknown))}; known settings: "
                              f"{', '.join(sorted(_FIELDS))}")
        if len(args) + len(kwargs) > len(_FIELDS):
            raise OptionError(f"Settings: {len(args)} positional values for {len(_FIELDS)} settings; give them "
                              "as keywords")
        return super().__new__(cls)

    def __post_init__(self):
        # every way in (CLI, TOML, the Python API) ends here: values are coerced to the field's type
        # and checked against its choices and limits, one field at a time
        for f in dataclasses.fields(self):
            setattr(self, f.name, coerce(f.name, getattr(self, f.name), f.name))

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes`` (field names, dashes or underscores) coerced and checked."""
        return settings_from_mapping(changes, self, source=None)

    def optimizer_for(self, iterations: int) -> str:
        """The optimiser of a level of ``iterations`` evaluations per tile (see ``optimizer``)."""
        if self.optimizer != "auto":
            return self.optimizer
        return "adam" if iterations <= ADAM_UP_TO else "lbfgs"

    def layers_for(self, network: str) -> tuple[tuple[str, ...], str]:
        """(style layers, content layer) with ``network``: the settings' own, or the network's."""
        from hires.core.layers import DEFAULT_LAYERS, layers_of
        style, content = DEFAULT_LAYERS[network]
        style = self.style_layers or style
        content = content if self.content_layer == "auto" else self.content_layer
        known = layers_of(network)
        bad = [n for n in (*style, content) if n not in known]
        if bad:
            raise OptionError(f"--style-layers/--content-layer: {bad[0]} is not a layer of the {network} network "
                              + ("(MobileNetV2 layers mb0-mb13 need --network hybrid)" if bad[0].startswith("mb")
                                 else ""))
        return tuple(style), content

    def level_iterations(self, level: int) -> int:
        return self.iterations[min(level, len(self.iterations) - 1)]


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = typing.get_type_hints(Settings)


def _numpydoc() -> str:
    """Settings' Parameters section, made from the fields' own help (one place for each default and word)."""
    lines = ["", "Parameters", "----------"]
    for name, f in _FIELDS.items():
        kind = getattr(_HINTS[name], "__name__", str(_HINTS[name]).replace("typing.", ""))
        lines += [f"{name} : {kind}, default {f.default!r}", f"    {f.metadata['help']}"]
    return "\n" + "\n    ".join(lines)


Settings.__doc__ = (Settings.__doc__ or "") + _numpydoc()

# spellings accepted for a field, as flags, TOML keys and API keywords (user-facing words are US English)
ALIASES = {"match_colours": "match_colors"}
# values accepted for a field besides its choices: --init auto was always the same as fast
VALUE_ALIASES = {"init": {"auto": "fast"}}


def flag(name: str) -> str:
    return name.replace("_", "-")


SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")
PHYSICAL_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*[xX×]\s*(\d+(?:\.\d+)?)\s*(cm|mm|in)\s*$", re.IGNORECASE)
MM_PER_UNIT = {"mm": 1.0, "cm": 10.0, "in": 25.4}


def print_pixels(length: float, unit: str, dpi: float) -> int:
    """Pixels of ``length`` ``unit`` at ``dpi``, rounded to the nearest pixel (so the printed size
    is within half a pixel of the one asked: 30 cm at 300 dpi is 3543.3 px -> 3543).  A size that
    rounds to no pixel is 0, which ``parse_size`` refuses like ``--size 0x0``."""
    px = length * MM_PER_UNIT[unit.lower()] / 25.4 * dpi
    if not math.isfinite(px) or px > 2**31:
        raise OptionError(f"--size: {length:g} {unit} at {dpi:g} dpi is over 2 gigapixels; hires does not go that far yet")
    return round(px)


def print_sizes() -> dict[str, tuple[int, int]]:
    """Named print sizes from configs/print_sizes.toml (or the copy inside the package)."""
    table = read_toml(CONFIG_DIR / "print_sizes.toml", "print sizes")
    return {k.lower(): (int(v[0]), int(v[1])) for k, v in table.get("sizes", {}).items()}


def physical_size(text) -> bool:
    return isinstance(text, str) and PHYSICAL_RE.match(text) is not None


def parse_size(text: str, param: str = "--size", dpi: float = 300.0) -> tuple[int, int]:
    """'6000x4500', a physical size at ``dpi`` ('30x40cm', '12x16in', '210x297mm') or a named print
    size ('a3') -> (width, height) in px; every way of giving a size meets the same checks."""
    dpi = coerce("dpi", dpi, "--dpi")
    if isinstance(text, (tuple, list)) and len(text) == 2:
        w, h = (coerce_value(int, v, param) for v in text)
    else:
        s = str(text)
        m = SIZE_RE.match(s)
        physical = PHYSICAL_RE.match(s)
        named = print_sizes()
        if physical:
            unit = physical.group(3)
            w, h = (print_pixels(float(physical.group(i)), unit, dpi) for i in (1, 2))
        elif m:
            w, h = int(m.group(1)), int(m.group(2))
        elif s.strip().lower() in named:
            w, h = named[s.strip().lower()]
        else:
            names = ", ".join(sorted(named)) or "none"
            raise OptionError(f"{param}: {s!r} is not a size; write WIDTHxHEIGHT in px, e.g. 6000x4500, "
                              f"a size in cm, mm or in (30x40cm, at --dpi), or a print size ({names})")
    if w <= 0 or h <= 0:
        at = f" at {dpi:g} dpi" if physical_size(text) else ""
        raise OptionError(f"{param}: {text if isinstance(text, str) else f'{w}x{h}'} is {w}x{h} px{at}; "
                          "it must have a positive width and height, e.g. 6000x4500")
    if w * h > 2**31:
        raise OptionError(f"{param}: {w}x{h} is over 2 gigapixels; hires does not go that far yet")
    return w, h


# KB/MB/GB/TB are powers of 1000 and KiB/MiB/GiB/TiB powers of 1024 (IEC); a bare letter (k, M, G, T)
# is binary, as in `free -g` and most memory settings, so "4G" is 4 GiB
_UNITS = {"": 1, "b": 1,
          "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
          "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_memory(text) -> int:
    """'4GiB', '1500MB', '2G' (binary), or a byte count -> bytes."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = re.match(r"^\s*([\d.]+)\s*([a-zA-Z]*)\s*$", str(text))
        unit = m.group(2).lower() if m else None
        if not m or unit not in _UNITS or m.group(1).count(".") > 1:
            raise OptionError(f"--memory: {text!r} is not a size; write e.g. 4GiB, 1500MB or 2G (= 2 GiB)")
        value = int(float(m.group(1)) * _UNITS[unit])
    if value <= 0:
        raise OptionError(f"--memory: {text!r} must be positive, e.g. 4GiB")
    return value


MAX_WEIGHT = 1e6  # mixing weights are relative: anything larger only risks overflowing their sum


def check_weight(weight, spec, what: str = "--style") -> float:
    """A mixing weight (of a style image, an example or a built-in style): a finite number in
    (0, MAX_WEIGHT]."""
    try:
        w = _convert(float, weight)
    except (TypeError, ValueError):
        raise OptionError(f"{what}: weight {weight!r} in {spec!r} is not a number; write FILE:0.5") from None
    if not 0 < w <= MAX_WEIGHT:
        raise OptionError(f"{what}: weight {weight!r} in {spec!r} must be above 0 and at most {MAX_WEIGHT:g}, e.g. 0.5")
    return w


def parse_style(spec: str) -> tuple[str, float]:
    """'painting.jpg:0.7' -> ('painting.jpg', 0.7); 'painting.jpg' -> ('painting.jpg', 1.0)."""
    path, sep, weight = str(spec).rpartition(":")
    if sep and path and re.fullmatch(r"[\d.eE+-]+|[+-]?(inf|infinity|nan)", weight, re.IGNORECASE):
        return path, check_weight(weight, spec)
    return str(spec), 1.0


# ---------------------------------------------------------------- one coercion path

N_BUILTIN = 26  # styles of the bundled 26-style network (hires.engine.magenta.MultiStyleTransformer)


def builtin_mix(spec: str) -> dict[int, float]:
    """'19' or '3:0.7,19:0.3' -> {index: weight} (the OptionError names --builtin-style)."""
    mix: dict[int, float] = {}
    for part in str(spec).split(","):
        idx, _, weight = part.strip().partition(":")
        try:
            k, w = int(idx), check_weight(weight, spec, "--builtin-style") if weight else 1.0
        except (ValueError, OptionError):
            k, w = -1, 0.0
        if not 0 <= k < N_BUILTIN or w <= 0:
            raise OptionError(f"--builtin-style: {spec!r} is not a style 0-{N_BUILTIN - 1} or a blend "
                              "such as 3:0.7,19:0.3")
        mix[k] = mix.get(k, 0.0) + w
    return mix


def _layer_names():
    from hires.core.layers import LAYERS
    return LAYERS


# per-field limits beyond the type and choices: (test, what a good value looks like)
def _between(lo, hi, what: str):
    return (lambda v: lo <= v <= hi, what)


# a loss weight beyond this overflows float32 losses and their gradients
MAX_LOSS_WEIGHT = 1e6
SEED_MAX = 2**64 - 1  # torch's and numpy's generators take seeds of up to 64 bits
LIMITS = {
    "base_size": _between(32, 16384, "between 32 and 16384 (default 512)"),
    "iterations": (lambda v: len(v) > 0 and all(0 <= i <= 100000 for i in v),
                   "counts from 0 to 100000, e.g. 200,60,30"),
    "lr": (lambda v: 0 < v <= 10, "above 0 and at most 10, e.g. 0.02"),
    "style_weight": _between(0, MAX_LOSS_WEIGHT, f"between 0 and {MAX_LOSS_WEIGHT:g}"),
    "content_weight": _between(0, MAX_LOSS_WEIGHT, f"between 0 and {MAX_LOSS_WEIGHT:g}"),
    "tv_weight": _between(0, MAX_LOSS_WEIGHT, f"between 0 and {MAX_LOSS_WEIGHT:g}"),
    "mean_weight": _between(0, MAX_LOSS_WEIGHT, f"between 0 and {MAX_LOSS_WEIGHT:g}"),
    "style_scale": _between(0.01, 16, "between 0.01 and 16, e.g. 1.0"),
    "example_scale": _between(0.01, 16, "between 0.01 and 16, e.g. 1.0"),
    "seed": _between(0, SEED_MAX, f"a whole number from 0 to 2**64-1 ({SEED_MAX})"),
    "strength": (lambda v: 0 <= v <= 1, "between 0 and 1"),
    "builtin_style": (lambda v: bool(builtin_mix(v)), "a style 0-25 or a blend such as 3:0.7,19:0.3"),
    "fast_size": (lambda v: v == 0 or 64 <= v <= 65536, "between 64 and 65536, or 0 for the output size"),
    "style_layers": (lambda v: all(n in _layer_names() for n in v),
                     "network layer names such as relu1_1,relu2_1,mb3 (VGG19 relu1_1-relu5_4, MobileNetV2 mb0-mb13)"),
    "content_layer": (lambda v: v == "auto" or v in _layer_names(), "auto or a layer name such as mb10 or relu4_2"),
    "min_style_layers": _between(1, 16, "between 1 and 16"),
    "tile_size": (lambda v: v == 0 or 64 <= v <= 65536, "between 64 and 65536, or 0 for auto"),
    "overlap": _between(0, 4096, "between 0 and 4096"),
    "margin": _between(0, 4096, "between 0 and 4096"),
    "dpi": _between(1, 10000, "between 1 and 10000, e.g. 300"),
    "quality": (lambda v: 1 <= v <= 100, "between 1 and 100"),
    "variety": _between(0, 100, "between 0 and 100 (default 1)"),
    "memory": (lambda v: parse_memory(v) > 0, "a size such as 4GiB, 1500MB or 2G"),
}


def coerce(name: str, value, label: str):
    """The value of Settings field ``name`` from a CLI string, a TOML value or a Python object.

    Raises OptionError naming ``label`` (a flag or a key), the value and what is allowed."""
    f = _FIELDS[name]
    if isinstance(value, str) and value in VALUE_ALIASES.get(name, {}):
        value = VALUE_ALIASES[name][value]
    return coerce_value(_HINTS[name], value, label, f.metadata.get("choices"), LIMITS.get(name))


def settings_from_mapping(values: dict, base: Settings | None = None, source: str | None = "settings",
                          label=None) -> Settings:
    """``base`` with ``values`` (field names with dashes or underscores) applied: the one path by
    which the CLI, TOML files and the Python API change settings.  Errors name ``source`` (a file),
    the key (or ``label(name)``, e.g. a flag) and the allowed values."""
    base = base or Settings()
    prefix = f"{source}: " if source else ""
    changes = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        name = ALIASES.get(name, name)
        if name not in _FIELDS:
            raise OptionError(f"{prefix}unknown setting {key!r}; known settings: {', '.join(sorted(_FIELDS))}")
        changes[name] = coerce(name, value, prefix + (label(name) if label else name))
    return dataclasses.replace(base, **changes)


def read_toml(path, what: str) -> dict:
    """The table of a TOML file; a missing or unreadable file is one OptionError naming ``what``."""
    path = Path(path)
    try:
        return tomllib.loads(read_regular(path).decode())
    except FileNotFoundError:
        raise OptionError(f"{what}: {str(path)!r} does not exist; check the path") from None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise OptionError(f"{what}: {str(path)!r} is not a readable TOML file: {e}") from None
