"""How the settings appear on the command line: their option groups, which are for experts
(``--help-all``), their metavars and how a default reads.  ``hires.commands.cli`` builds its flags from these
and ``config.Settings``."""
from __future__ import annotations

import dataclasses
import typing

from hires.core.config import Settings

_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_HINTS = typing.get_type_hints(Settings)

# The option groups of `hires render --help` and `hires texture --help`, every field in one
GROUPS = {
    "output": ("bit_depth", "dpi", "quality", "pyramid", "mode"),
    "style": ("style_weight", "content_weight", "tv_weight", "mean_weight", "style_scale", "preserve_color",
              "style_layers", "content_layer", "min_style_layers"),
    "schedule": ("base_size", "iterations", "optimizer", "lr", "init", "seed", "second_pass"),
    "fast network": ("method", "strength", "fast_size", "multiscale", "builtin_style"),
    "texture": ("example_scale", "seamless", "start", "variety", "detail", "match_colors"),
    "feature network and device": ("network", "weights", "pooling", "device", "precision"),
    "memory and tiles": ("memory", "tile_size", "overlap", "margin", "canvas", "work_dir"),
}
# settings a first-time user does not need: `hires render --help` leaves them out, `--help-all` shows them
EXPERT = {"tv_weight", "mean_weight", "style_layers", "content_layer", "min_style_layers", "optimizer", "lr",
          "pooling", "device", "precision", "tile_size", "overlap", "margin", "canvas", "variety"}
# metavars by field (else by type: N for whole numbers, X for others, LIST for tuples)
METAVARS = {"base_size": "PX", "fast_size": "PX", "tile_size": "PX", "overlap": "PX", "margin": "PX",
            "weights": "FILE", "work_dir": "DIR", "memory": "SIZE", "style_layers": "LAYER,...",
            "content_layer": "LAYER", "iterations": "N,...", "builtin_style": "N[:W],...", "dpi": "DPI"}

def shown_default(value, unset: str | None = None) -> str:
    """A default as help shows it: on/off, a comma list; for no value, what is used then (a field's
    ``unset`` metadata: "the style images", "beside the output"), else 'none'."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == ():
        return unset or "none"
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def metavar(name: str) -> str:
    f = _FIELDS[name]
    if f.metadata.get("choices"):
        return "{" + ",".join(map(str, f.metadata["choices"])) + "}"
    if name in METAVARS:
        return METAVARS[name]
    kind = _HINTS[name]
    return "N" if kind is int else "X" if kind is float else "LIST" if typing.get_origin(kind) is tuple else "VALUE"
