"""The studio's quick looks: a fast-network painting of a small photo (the page sends it downscaled),
and the built-in styles' thumbnails (the bundled photo painted with each).  One at a time (``lock``):
two would share two cores and both be late.  The network stays loaded between calls
(``hires.engine.magenta`` keeps it), so a preview costs its painting only."""
from __future__ import annotations

import threading
from pathlib import Path

from hires.core.errors import OptionError

PREVIEW_SIDE = 1024
BUNDLED_PHOTO = Path(__file__).parents[1] / "data" / "chelsea.png"


def _jpeg(image) -> bytes:
    """An sRGB JPEG of a float image in [0, 1]."""
    from hires.core import io
    im = (io.vips_from_array(image) * 255 + 0.5).cast("uchar")
    return im.jpegsave_buffer(Q=88)


def _paint(lock: threading.Lock, content, styles, size, memory: int, **settings) -> bytes:
    from hires.core import process
    from hires.api import render
    process.huge_pages_for_torch()
    with lock:
        result = render(content, styles or None, None, size=size, method="fast", multiscale=False,
                        memory=f"{memory}B", **settings)
    return _jpeg(result.image)


def fast_preview(lock: threading.Lock, content: Path, styles: list, values: dict, memory: int) -> bytes:
    """A JPEG of the photo ``content`` (at most PREVIEW_SIDE px long) painted with ``styles`` or
    ``values['builtin_style']``, at ``values['strength']``."""
    from hires.core import io
    unknown = set(values) - {"strength", "builtin_style"}
    if unknown:
        raise OptionError(f"{sorted(unknown)[0]}: a preview takes only strength and builtin_style")
    w, h = io.image_size(content, "content")
    s = min(1.0, PREVIEW_SIDE / max(w, h))
    size = f"{max(1, round(w * s))}x{max(1, round(h * s))}"
    settings = {k: values[k] for k in ("strength", "builtin_style") if values.get(k) not in (None, "")}
    return _paint(lock, content, [str(p) for p in styles], size, memory, fast_size=PREVIEW_SIDE, **settings)


THUMBNAILS = Path(__file__).parents[1] / "static" / "builtin"
THUMB_SIZE = "180x120"    # the bundled photo's aspect
N_BUILTIN = 26


def builtin_thumbnail(lock: threading.Lock, index: int, memory: int = 2 << 30) -> bytes:
    """Built-in style ``index`` shown as the bundled photo painted with it (a JPEG)."""
    return _paint(lock, BUNDLED_PHOTO, None, THUMB_SIZE, memory, builtin_style=str(index))


def write_thumbnails(folder: Path = THUMBNAILS) -> None:
    """The page's thumbnails of the built-in styles, shipped in the package so that the page shows
    them at once (``python -m hires.studio.preview``; tests/test_serve.py checks they are current)."""
    folder.mkdir(exist_ok=True)
    lock = threading.Lock()
    for i in range(N_BUILTIN):
        (folder / f"{i:02d}.jpg").write_bytes(builtin_thumbnail(lock, i))


if __name__ == "__main__":
    write_thumbnails()
