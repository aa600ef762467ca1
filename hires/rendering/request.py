"""What the user asked, checked: a render or texture job (inputs decoded small, sizes, output path,
styles and their weights, masks), its run options and its work key.  The CLI, batch files and the
Python API all build their jobs here; hires.rendering.jobplan settles and plans them.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import typing
from dataclasses import dataclass
from pathlib import Path

from hires.core import io
from hires.fast.hstyle import is_hstyle, load as load_fitted
from hires.core.coercion import coerce_value, scheduler_spec
from hires.core.config import Settings, check_weight, parse_memory, parse_size, parse_style
from hires.core.errors import InputError, OptionError
from hires.core.output import check_output_path
from hires.engine.regions import ASPECT_TOLERANCE, Masks, load_mask

log = logging.getLogger(__name__)


@dataclass
class Job:
    content: Path | None
    styles: list[tuple[Path, float]]
    width: int
    height: int
    output: Path | None
    texture: bool
    overwrite: bool = False      # the output may replace a file at its path (else never, even at the end)
    masks: Masks = Masks()       # the style regions' masks and the part kept photographic (hires.engine.regions)


def _run_opt(default, help, metavar=None, unset=None):
    return dataclasses.field(default=default, metadata={"help": help, "metavar": metavar, "unset": unset})


@dataclass
class RunOptions:
    """How a render runs, as opposed to what it makes (Settings): none of these changes the result,
    so none is part of the key that decides whether checkpoints may be resumed.  The CLI's flags
    derive from these fields, as the settings' flags from Settings."""
    fresh: bool = _run_opt(False, "start again, ignoring what an interrupted run of this render saved")
    keep_work: bool = _run_opt(False, "keep the work folder (checkpoints) after the output is written")
    snapshots: str | None = _run_opt(None, "write downscaled previews into DIR as the render goes", "DIR", "off")
    snapshot_size: int = _run_opt(1024, "long side of the previews in px", "PX")
    snapshot_every: int = _run_opt(8, "a preview every N tiles of a tiled level, and after every level", "N")
    scheduler: object = _run_opt(None, "refine each level's tiles on a Dask cluster (pip install 'hires[distributed]'): "
                                       "local:N starts N workers here, tcp://HOST:PORT joins a running scheduler",
                                 "local:N|tcp://HOST:PORT", "off: the tiles run in this process")

    def __post_init__(self):  # the API's keywords: checked like every other way in
        checked = run_options_from({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        self.__dict__.update(checked.__dict__)


RUN_FIELDS = {f.name for f in dataclasses.fields(RunOptions)}


_RUN_HINTS = typing.get_type_hints(RunOptions)


RUN_LIMITS = {"snapshot_size": (lambda v: 16 <= v <= 65536, "between 16 and 65536 px"),
              "snapshot_every": (lambda v: 1 <= v <= 1_000_000, "a whole number of tiles, 1 or more")}


def run_options_from(values: dict, prefix: str = "", label=None) -> RunOptions:
    """RunOptions from CLI, TOML or API values, through the same coercion as Settings (real
    booleans only, numbers in range); errors name ``prefix`` (a file and job) and the key (or
    ``label(name)``, a flag)."""
    out = RunOptions.__new__(RunOptions)
    for f in dataclasses.fields(RunOptions):
        value = values.get(f.name, f.default)
        if f.name == "scheduler":  # a spec string, or an API user's own Client
            value = scheduler_spec(value, prefix + (label(f.name) if label else f.name))
        else:
            value = coerce_value(_RUN_HINTS[f.name], value, prefix + (label(f.name) if label else f.name),
                                 check=RUN_LIMITS.get(f.name))
        out.__dict__[f.name] = value
    snaps = out.snapshots
    if snaps is not None and (not snaps.strip() or (os.path.lexists(snaps) and not os.path.isdir(snaps))):
        name = prefix + (label("snapshots") if label else "snapshots")
        raise OptionError(f"{name}: {snaps!r} " + ("is an empty name" if not snaps.strip() else
                          "exists and is not a folder") + "; give a folder for the previews")
    return out


def path_argument(value, what: str) -> Path:
    """A path the API was given (str or os.PathLike, not empty), else an InputError naming ``what``."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{what}: {value!r} is not a file path; give a str or pathlib.Path")
    return Path(value)


def _style_specs(style, what: str) -> list:
    """The style argument as a list of specs: a path ('painting.jpg:0.7' for a weight), a (path,
    weight) pair, or a list or tuple of those; anything else is an OptionError naming ``what``."""
    def one(spec):
        if isinstance(spec, tuple):
            if len(spec) == 2 and isinstance(spec[1], (int, float)) and not isinstance(spec[1], bool):
                return (path_argument(spec[0], what), spec[1])
            raise OptionError(f"{what}: {spec!r} is not a (path, weight) pair")
        return str(path_argument(spec, what))
    if style is None:
        return []
    if isinstance(style, (str, os.PathLike)) or (isinstance(style, tuple) and len(style) == 2
                                                 and isinstance(style[1], (int, float))):
        return [one(style)]
    if isinstance(style, (list, tuple)):
        return [one(spec) for spec in style]
    raise OptionError(f"{what}: {style!r} is not a path, a (path, weight) pair or a list of them")


def _styles(style, what: str, optional: bool = False, budget: int | None = None) -> list[tuple[Path, float]]:
    specs = _style_specs(style, what)
    if not specs and not optional:
        raise OptionError(f"{what}: give at least one image" + ("" if what == "example" else
                          " (or, with --method fast, --builtin-style N)"))
    out = []
    for spec in specs:
        path, weight = spec if isinstance(spec, tuple) else parse_style(str(spec))
        if is_hstyle(path):
            if what == "example":
                raise OptionError(f"example: {str(path)!r} is a fitted style; a texture takes example images")
            load_fitted(path, what)
        else:
            io.check_decodes(path, what, budget)
        out.append((Path(path), check_weight(weight, spec)))
    return out


def make_job(content, style, output, size, texture: bool, overwrite: bool = False, dpi: float = 300.0,
             styles_optional: bool = False, memory: str | int | None = None) -> Job:
    """The inputs checked (each decoded once, small; refused before decoding when its decoder
    would not fit ``memory``), the size resolved, the output path checked."""
    budget = parse_memory(memory) if memory is not None else None
    content_path = None
    if not texture:
        content_path = path_argument(content, "content")
        cw, ch = io.check_decodes(content_path, "content", budget)
    styles = _styles(style, "example" if texture else "--style", styles_optional, budget)
    if size is None:
        if texture:
            raise OptionError("--size: a texture needs a size, e.g. --size 2048x2048")
        width, height = cw, ch
    else:
        width, height = parse_size(size, dpi=dpi)
    out = check_output_path(path_argument(output, "-o"), overwrite) if output is not None else None
    return Job(content_path, styles, width, height, out, texture, bool(overwrite))


def check_masks(masks, keep, n_styles: int, width: int, height: int, budget: int | None,
                texture: bool = False) -> Masks:
    """The masks checked before any work: no more masks than styles, each a gray image that
    decodes, of the output's aspect (within 1%), covering something; the keep mask not the whole
    frame.  Errors are one line naming the flag and the file."""
    masks = mask_list(masks)
    check_mask_count(len(masks), n_styles, texture, keep is not None)
    checked = []
    for name, value in [("--mask", m) for m in masks] + ([("--keep", keep)] if keep is not None else []):
        path = path_argument(value, name)
        w, h = io.check_decodes(path, name, budget)
        if abs((w / h) / (width / height) - 1) > ASPECT_TOLERANCE:
            raise InputError(f"{name}: {str(path)!r} is {w}x{h} px, aspect {w / h:.3f}, and the output is "
                             f"{width}x{height}, aspect {width / height:.3f}; a mask must have the output's shape "
                             "(within 1%): draw it over the photo, or resize it")
        if not io.is_gray(path, name):
            raise InputError(f"{name}: {str(path)!r} is a colour image; a mask is gray (white: the region, black: "
                             "not, gray: partly): save it as grayscale")
        small = load_mask(path, *_small(w, h))
        if not small.any():
            raise InputError(f"{name}: {str(path)!r} is black everywhere, so it "
                             + ("gives its style no pixels" if name == "--mask" else "keeps nothing")
                             + "; white marks the region (invert the mask?)")
        if name == "--keep" and small.min() == 255:
            raise InputError(f"--keep: {str(path)!r} is white everywhere: it keeps the whole photo and leaves "
                             "nothing to stylise; white marks only what stays photographic")
        checked.append(path)
    return Masks(tuple(checked[:len(masks)]), checked[len(masks)] if keep is not None else None)


def mask_list(masks) -> list:
    """The masks argument as a list: None, one path (str or os.PathLike) or a list or tuple of them;
    anything else is an OptionError (each path itself is checked by ``path_argument``)."""
    if masks is None:
        return []
    if isinstance(masks, (str, os.PathLike)):
        return [masks]
    if isinstance(masks, (list, tuple)) and all(isinstance(m, (str, os.PathLike)) for m in masks):
        return list(masks)
    raise OptionError(f"masks: {masks!r} is not a mask's path or a list of paths; give a str or os.PathLike "
                      "(or a list of them), the i-th for the i-th style")


def check_mask_count(n_masks: int, n_styles: int, texture: bool, keep: bool, where: str = "--mask") -> None:
    """As many masks as styles at most (each pairs with the style of its position), none for a texture."""
    if n_masks > n_styles:
        raise OptionError(f"{where}: {n_masks} masks for {n_styles} style(s); each mask pairs with the style "
                          "of its position, so give at most one per style")
    if texture and (n_masks or keep):
        raise OptionError(f"{where}: style regions are for renders; a texture takes its examples over the whole frame")


def _small(width: int, height: int, side: int = 512) -> tuple[int, int]:
    s = min(1.0, side / max(width, height))
    return max(1, round(width * s)), max(1, round(height * s))


def builtin_only(settings: Settings) -> bool:
    """A fast render with a built-in style needs no style image."""
    return settings.method == "fast" and settings.builtin_style is not None


def work_key(job: Job, settings: Settings, network: str) -> str:
    h = hashlib.sha256()
    for p in [job.content, *(p for p, _ in job.styles), *job.masks.masks, job.masks.keep]:
        if p is not None:
            st = Path(p).stat()
            h.update(f"{Path(p).resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    h.update(json.dumps([job.width, job.height, [w for _, w in job.styles], len(job.masks.masks), network,
                         dataclasses.asdict(settings)], default=str, sort_keys=True).encode())
    return h.hexdigest()[:16]


TEXTURE_SIZE = "512x512"  # a texture's size when neither the job nor its preset gives one


def requested_size(size, preset: str | None, texture: bool):
    """The size asked (CLI ``--size``, a job's ``size`` or ``print_size``), else the preset's, else a
    texture's default; None for a render: the content's own size."""
    from hires.core.presets import preset_table
    if size:
        return size
    preset_size = preset_table(preset).get("size") if preset else None
    return preset_size or (TEXTURE_SIZE if texture else None)


def default_output(source) -> str:
    """``NAME-hires.png`` for an input ``NAME.ext`` (a style spec's weight dropped)."""
    return f"{Path(parse_style(str(source))[0]).stem}-hires.png"
