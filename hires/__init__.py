"""hires: neural style transfer and texture synthesis at print scale.

    import hires
    hires.render("photo.jpg", "painting.jpg", "print.tif", size="6000x4500")
    hires.texture("bark.jpg", "bark_8k.tif", size="8192x8192", seamless=True)

The API is loaded lazily (PEP 562): ``import hires`` and ``hires --help`` do not import torch,
numba or libvips; ``hires.render`` does, the first time it is used.
"""
import importlib

from hires.core.config import Settings
from hires.core.errors import HiresError

__all__ = ["HiresError", "Result", "Settings", "plan", "render", "texture"]
__version__ = "0.1.0"

_LAZY = {"Result": "hires.rendering.finishing", "plan": "hires.api", "render": "hires.api", "texture": "hires.api"}


def __getattr__(name):
    if name in _LAZY:
        from hires.core.process import huge_pages_for_torch
        huge_pages_for_torch()  # before the API loads torch: a render is about to start
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'hires' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
