"""The Python API: ``render``, ``texture`` and ``plan``.  Each checks what it was given, resolves it
as the command line resolves its flags (``resolver.resolve``), and hands the job to
``pipeline.run`` (or the planner); ``hires/__init__.py`` exposes them lazily.
"""
from __future__ import annotations

from hires.rendering import pipeline
from hires.core.config import Settings
from hires.core.errors import OptionError
from hires.rendering.fastrender import fast_plan
from hires.rendering.finishing import Result
from hires.core.progress import ignore
from hires.rendering.jobplan import plan_job
from hires.rendering.resolver import Asked, Request, resolve


def render(content, style=None, output=None, *, size=None, masks=None, keep=None, preset: str | None = None,
           config=None, settings: Settings | None = None, progress=ignore, overwrite: bool = False,
           **overrides) -> Result:
    """Stylise a photo with one or more paintings.

    Parameters
    ----------
    content : str or os.PathLike
        The photo (JPEG, PNG, TIFF or WebP).
    style : str, os.PathLike, (path, weight) or a list of them, optional
        The painting(s); ``"painting.jpg:0.7"`` gives a weight.  May be left out with
        ``method="fast", builtin_style=N``.
    output : str or os.PathLike, optional
        The file to write (.png .jpg .webp .tif); None keeps the result in memory only.
    size : str or (int, int), optional
        ``"WxH"`` in px, a physical size at ``dpi`` (``"30x40cm"``) or a named print size (``"a3"``);
        default: the preset's, else the content's own size.
    masks : str, os.PathLike or a list of them, optional
        Gray masks, the i-th giving the i-th style its part of the frame (white: its region, gray:
        partly); what no mask covers takes the styles without a mask (every style when each has one).
    keep : str or os.PathLike, optional
        A gray mask of what stays photographic (white: the photo, blended in by the gray values).
    preset, config : str, optional
        A preset's name (``hires presets``) or a TOML file of settings, applied in that order before
        ``settings`` fields given as keywords, as ``--preset`` and ``--config`` are.
    settings : hires.Settings, optional
        The base settings (default: the built-in defaults, or the preset's).
    progress : callable, optional
        Receives the events of ``hires.core.progress`` as objects.
    overwrite : bool
        Replace a file at ``output`` (else one there, or one that appears, is never replaced).
    **overrides
        Settings fields (``iterations=(100, 30)``, ``memory="2GiB"``) or run options (``fresh``,
        ``keep_work``, ``snapshots``, ...).

    Returns
    -------
    Result
        The image (unless disk-backed), the output path, the network, the plan, times.
    """
    _check_progress(progress)
    r = resolve(Asked.from_keywords(overrides, content=content, styles=style, output=output, size=size, masks=masks,
                                    keep=keep, preset=preset, config=config, settings=settings, overwrite=overwrite))
    return pipeline.run(r.job, r.settings, progress, r.options)


def texture(example, output=None, *, size=None, preset: str | None = None, config=None,
            settings: Settings | None = None, progress=ignore, overwrite: bool = False, **overrides) -> Result:
    """Synthesise a texture like one or more examples.

    Parameters
    ----------
    example : str, os.PathLike, (path, weight) or a list of them
        The example texture(s), with optional weights (``"bark.jpg:0.7"``).
    output : str or os.PathLike, optional
        The file to write; None keeps the result in memory only.
    size : str or (int, int), optional
        ``"WxH"``, a physical or named print size; default: the preset's, else 512x512.
    preset, config, settings, progress, overwrite, **overrides
        As for ``render`` (``seamless=True``, ``example_scale=2.0``, ...).

    Returns
    -------
    Result
        The texture (float32 RGB in [0, 1] unless disk-backed), the output path, the plan, times.
    """
    _check_progress(progress)
    r = resolve(Asked.from_keywords(overrides, texture=True, styles=example, output=output, size=size, preset=preset,
                                    config=config, settings=settings, overwrite=overwrite))
    return pipeline.run(r.job, r.settings, progress, r.options)


def plan(source, style=None, *, texture: bool = False, size=None, masks=None, keep=None, preset: str | None = None,
         config=None, settings: Settings | None = None, calibrate: bool = False, **overrides):
    """What a render or a texture would do, before any of it runs: levels, tiles, memory and time.

    Parameters
    ----------
    source : str or os.PathLike (a list of them, or with weights, for a texture)
        The photo of a render, or with ``texture=True`` the example(s).
    style : as for ``render``, optional
        The painting(s) of a render.
    texture : bool
        Plan ``texture(source, ...)`` instead of ``render(source, style, ...)``.
    size, masks, keep, preset, config, settings, **overrides
        As for ``render``.
    calibrate : bool
        Measure this machine's speed first (a few seconds, cached), so the plan gives times.

    Returns
    -------
    Plan
        ``describe()`` gives the lines ``hires plan`` prints, ``as_dict()`` its JSON (``fastrender.FastPlan``
        for ``method="fast"``, with the same ``as_dict`` keys for size and peak memory).
    """
    r = resolve(Asked.from_keywords(overrides, texture=texture, content=None if texture else source,
                                    styles=source if texture else style, size=size, masks=masks, keep=keep,
                                    preset=preset, config=config, settings=settings))
    return plan_of(r, calibrate)


def plan_of(r: Request, calibrate: bool = False):
    """The plan of a resolved request (``hires plan`` prints it)."""
    if r.settings.method == "fast" and not r.job.texture:
        return fast_plan(r.job, r.settings)
    return plan_job(r.job, r.settings, calibrate=calibrate)


def _check_progress(progress) -> None:
    if not callable(progress):
        raise OptionError(f"progress: {progress!r} is not callable; give a function that takes one event, or "
                          "leave it out")
