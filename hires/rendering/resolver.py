"""The one resolver: what a user gave (the command line's flags, a job table, the Python API's
keywords) becomes a frozen ``Request``: the job (inputs checked, size, output), the settings
(built-in defaults, preset, config file, values, in that order) and the run options.  Every front
end describes what it was given as an ``Asked`` and calls ``resolve``; nothing else assembles a job.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from hires.core.coercion import coerce_flag
from hires.core.config import Settings, parse_memory
from hires.core.errors import OptionError
from hires.core.presets import resolve_settings
from hires.rendering.request import (RUN_FIELDS, Job, RunOptions, builtin_only, check_masks, make_job, mask_list, requested_size,
                           run_options_from)


@dataclass(frozen=True, kw_only=True)
class Asked:
    """What a user gave, as given (checked by ``resolve``)."""
    texture: bool = False
    content: object = None                   # a render's photo
    styles: object = None                    # its paintings, or a texture's examples (paths, 'path:w', pairs)
    masks: object = None                     # gray masks, the i-th for the i-th style (hires.engine.regions)
    keep: object = None                      # a gray mask of what stays photographic
    output: object = None                    # None: the result stays in memory (a plan has none)
    size: object = None                      # 'WxH', a print size or (w, h); None: the preset's, else the default
    overwrite: object = False
    preset: object = None
    config: object = None
    settings: object = None                  # a base Settings (the API's settings=)
    values: Mapping = field(default_factory=dict)   # Settings fields, by name or flag spelling
    run: Mapping = field(default_factory=dict)      # RunOptions fields
    source: str | None = None                # where it was given (a job file and job), for errors
    label: Callable[[str], str] | None = None        # how errors name a field (a flag: --base-size)

    @classmethod
    def from_keywords(cls, keywords: Mapping, **given) -> "Asked":
        """The API's way in: ``keywords`` split into run options and settings by their names."""
        run = {k: v for k, v in keywords.items() if k in RUN_FIELDS}
        values = {k: v for k, v in keywords.items() if k not in RUN_FIELDS}
        return cls(values=values, run=run, **given)


@dataclass(frozen=True)
class Request:
    """A render or texture, resolved: what it makes (``job``, ``settings``) and how it runs."""
    job: Job
    settings: Settings
    options: RunOptions


def resolve(asked: Asked) -> Request:
    """``asked`` checked and resolved, each step once: the settings, the run options, the size (the
    preset's when none is given), then the job (inputs decoded small, output path checked)."""
    prefix = f"{asked.source}: " if asked.source else ""
    if asked.settings is not None and not isinstance(asked.settings, Settings):
        raise OptionError(f"{prefix}settings: {asked.settings!r} is not a hires.Settings; give hires.Settings(...), "
                          "preset= or single settings as keywords")
    for name in ("preset", "config"):
        value = getattr(asked, name)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise OptionError(f"{prefix}{name}: {value!r} is not a name or a path")
    preset = str(asked.preset) if asked.preset is not None else None
    settings = resolve_settings(dict(asked.values), preset=preset, config=asked.config, base=asked.settings,
                                source=asked.source, label=asked.label)
    options = run_options_from(dict(asked.run), prefix=prefix, label=asked.label)
    size = requested_size(asked.size, preset, asked.texture)
    job = make_job(None if asked.texture else asked.content, asked.styles, asked.output, size, asked.texture,
                   overwrite=coerce_flag(asked.overwrite, prefix + "overwrite"), dpi=settings.dpi,
                   styles_optional=not asked.texture and builtin_only(settings), memory=settings.memory)
    masks = mask_list(asked.masks)
    if masks or asked.keep is not None:
        masks = check_masks(masks, asked.keep, len(job.styles), job.width, job.height,
                            parse_memory(settings.memory), asked.texture)
        job = dataclasses.replace(job, masks=masks)
    return Request(job, settings, options)
