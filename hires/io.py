"""Image input and output through pyvips.

Reading: JPEG, PNG, TIFF, WebP (anything libvips reads), 8 or 16 bit, grey, RGB or CMYK,
with or without alpha.  EXIF orientation is applied, any embedded ICC profile is converted to
sRGB, alpha is flattened onto white, and images are shrunk on load, so a 20000 px input is
never decoded at full size when a small level is wanted.  Pixels come back as float32 RGB in
[0, 1], shape (H, W, 3).

Writing: PNG (8/16 bit), JPEG, WebP, TIFF (8/16 bit, deflate, tiled; BigTIFF when large), all
with DPI and an embedded sRGB profile.  Every write goes to a temporary file beside the
target and is renamed into place, so a crash never leaves a half-written output.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyvips

from hires import colour
from hires.canvas import release
from hires.errors import InputError, OptionError, OutputError

log = logging.getLogger(__name__)

WRITERS = {".png": "pngsave", ".jpg": "jpegsave", ".jpeg": "jpegsave", ".webp": "webpsave",
           ".tif": "tiffsave", ".tiff": "tiffsave"}


def _vips_message(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else str(e)


def _check_readable(path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what}: {str(path)!r} does not exist; check the path")
    if p.is_dir():
        raise InputError(f"{what}: {str(path)!r} is a folder; give an image file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what}: {str(path)!r} cannot be read; check its permissions")
    return p


def _open_header(path, what: str) -> pyvips.Image:
    p = _check_readable(path, what)
    try:
        return pyvips.Image.new_from_file(str(p), access="sequential")
    except pyvips.Error as e:
        raise InputError(f"{what}: {str(path)!r} is not an image hires can read (JPEG, PNG, TIFF, WebP): "
                         f"{_vips_message(e)}") from None


def _display_size(im: pyvips.Image) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after EXIF orientation."""
    try:
        orientation = im.get("orientation") if im.get_typeof("orientation") else 1
    except pyvips.Error:
        orientation = 1
    return (im.height, im.width) if orientation in (5, 6, 7, 8) else (im.width, im.height)


def image_size(path, what: str = "image") -> tuple[int, int]:
    """(width, height) as displayed, i.e. after EXIF orientation."""
    return _display_size(_open_header(path, what))


def _to_rgb_float(im: pyvips.Image, out: np.ndarray | None = None) -> np.ndarray:
    """sRGB 8/16-bit vips image, any band count -> float32 (H, W, 3) in [0, 1], into ``out``."""
    sixteen = im.format in ("ushort", "short", "uint", "int", "float", "double") or \
        im.interpretation in ("rgb16", "grey16")
    if im.hasalpha():
        white = 65535 if sixteen else 255
        im = im.flatten(background=[white] * (im.bands - 1), max_alpha=white)
    im = im.colourspace("rgb16" if sixteen else "srgb")
    if im.bands == 1:
        im = im.bandjoin([im, im])
    elif im.bands > 3:
        im = im.extract_band(0, n=3)
    return fetch_into(im.cast("float") / (65535.0 if sixteen else 255.0), out)


def fetch_into(im: pyvips.Image, out: np.ndarray | None = None, strip: int = 256,
               source: np.ndarray | None = None) -> np.ndarray:
    """Evaluate a float vips pipeline in strips of rows into ``out`` (RAM or memmap), clipped to
    [0, 1]: only one strip is ever held besides the destination (and of a disk-backed ``source``
    the pipeline reads, only what the strip needs: a region's fetch signals no progress)."""
    if out is None:
        out = np.empty((im.height, im.width, im.bands), np.float32)
    if out.shape != (im.height, im.width, im.bands):
        raise ValueError(f"out has shape {out.shape}, the image is {(im.height, im.width, im.bands)}")
    region = pyvips.Region.new(im)
    for y in range(0, im.height, strip):
        h = min(strip, im.height - y)
        rows = np.frombuffer(region.fetch(0, y, im.width, h), np.float32).reshape(h, im.width, im.bands)
        np.clip(rows, 0.0, 1.0, out=out[y:y + h])
        release(out)  # a disk-backed destination keeps only the strip in flight resident
        if source is not None:
            release(source)
    return out


def _high_depth(im: pyvips.Image) -> bool:
    return im.format not in ("uchar", "char")


def load_image(path, size: tuple[int, int] | None = None, long_side: int | None = None,
               what: str = "image", out: np.ndarray | None = None) -> np.ndarray:
    """Read ``path`` as float32 sRGB (H, W, 3) in [0, 1].

    ``size=(w, h)`` resizes to exactly that (scaling to cover, then centre-cropping when the
    aspect differs); ``long_side=n`` keeps the aspect with the longer side n px; neither reads
    the image at its own size.  8-bit images shrink on load (libvips' thumbnail); 16-bit and
    float images keep their precision through a 16-bit sRGB transform.  Pixels are produced in
    strips into ``out`` (allocated if not given; may be a disk-backed memmap).
    """
    header = _open_header(path, what)
    w0, h0 = _display_size(header)
    if size is not None:
        tw, th = size
    elif long_side is not None:
        s = long_side / max(w0, h0)
        tw, th = max(1, round(w0 * s)), max(1, round(h0 * s))
    else:
        tw, th = w0, h0
    try:
        if _high_depth(header):
            im = pyvips.Image.new_from_file(str(path), fail_on="error").autorot()
            if im.get_typeof("icc-profile-data"):
                im = im.icc_transform("srgb", embedded=True, depth=16)
            scale = max(tw / im.width, th / im.height)
            im = im.resize(scale, kernel="lanczos3")
            im = im.crop((im.width - min(tw, im.width)) // 2, (im.height - min(th, im.height)) // 2,
                         min(tw, im.width), min(th, im.height))
        else:
            im = pyvips.Image.thumbnail(str(path), tw, height=th, size="both", crop="centre",
                                        export_profile="srgb", fail_on="error")
        if (im.width, im.height) != (tw, th):  # rounding: make the size exact
            im = im.resize(tw / im.width, vscale=th / im.height, kernel="cubic")
            im = im.crop(0, 0, min(tw, im.width), min(th, im.height)).gravity("north-west", tw, th,
                                                                             extend="copy")
        return _to_rgb_float(im, out)
    except pyvips.Error as e:
        raise InputError(f"{what}: {str(path)!r} is corrupt or truncated: {_vips_message(e)}") from None


def is_gray(path, what: str = "image") -> bool:
    """A one-band (or band + alpha) file, or colour channels that agree everywhere (at 128 px)."""
    im = _open_header(path, what)
    if im.bands - int(im.hasalpha()) == 1:
        return True
    return colour.is_gray(load_image(path, long_side=128, what=what))


def check_decodes(path, what: str = "image") -> tuple[int, int]:
    """Decode the whole file once at a small size, so a corrupt input fails before any work."""
    load_image(path, long_side=32, what=what)
    return image_size(path, what)


def check_output_path(path, overwrite: bool = False) -> Path:
    """Raise before any work if ``path`` cannot be written, or exists and ``overwrite`` is off."""
    p = Path(path)
    if p.suffix.lower() not in WRITERS:
        raise OutputError(f"-o: {str(path)!r} has no known image extension; "
                          f"use one of {', '.join(sorted(WRITERS))}")
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"-o: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"-o: folder {str(folder)!r} is not writable")
    if p.is_dir():
        raise OutputError(f"-o: {str(path)!r} is a folder; give a file name such as out.png")
    if p.exists() and not overwrite:
        raise OutputError(f"-o: {str(path)!r} exists; give another name or pass --overwrite to replace it")
    return p


def vips_from_array(arr: np.ndarray) -> pyvips.Image:
    """Wrap a float32 (H, W, 3) array (RAM or memmap) without copying it.  Every page of a memmap
    that libvips reads stays resident until it is released: writes go through ``release_while_written``
    (``save_image`` does it) and fetches through ``fetch_into(..., source=)``, so that a canvas larger than memory is read a
    window at a time (libvips' own raw loader is no better: it maps the whole file, and a 16384 px
    texture's 3.2 GB canvas was all resident while its TIFF was written)."""
    if arr.dtype != np.float32 or arr.ndim != 3 or not arr.flags.c_contiguous:
        raise ValueError("expected a C-contiguous float32 (H, W, C) array")
    h, w, c = arr.shape
    im = pyvips.Image.new_from_memory(arr.data, w, h, c, "float")
    return im.copy(interpretation="srgb" if c >= 3 else "b-w")


# a disk-backed source hands its pages back every this many pixels of a write (48 MB of float RGB)
RELEASE_PX = 4 << 20


def release_while_written(im: pyvips.Image, source: np.ndarray) -> pyvips.Image:
    """``im``, an image about to be written that reads ``source``, set to release a disk-backed
    ``source`` every RELEASE_PX pixels of the write (libvips signals progress on the image being
    written, from the thread that drives the write).  Hold the returned image until the write
    returns: the handler lives with this Python object."""
    if not isinstance(source, np.memmap):
        return im
    last = [0]

    def on_eval(_image, progress):
        if progress.npels < last[0]:  # a new write of the same image
            last[0] = 0
        if progress.npels - last[0] >= RELEASE_PX:
            last[0] = progress.npels
            release(source)

    im.set_progress(True)
    im.signal_connect("eval", on_eval)
    return im


def check_format(path, bit_depth: int = 8, pyramid: bool = False) -> str:
    """The output's extension, once the options asked of it are known to fit that format."""
    ext = Path(path).suffix.lower()
    if bit_depth not in (8, 16):
        raise OptionError(f"--bit-depth: {bit_depth} must be 8 or 16")
    if bit_depth == 16 and ext not in (".png", ".tif", ".tiff"):
        raise OptionError(f"--bit-depth 16: {ext} stores 8 bits only; write .tif or .png for 16-bit")
    if pyramid and ext not in (".tif", ".tiff"):
        raise OptionError(f"--pyramid: {ext} cannot hold a pyramid; write .tif")
    return ext


def write_text_atomic(path, text: str) -> Path:
    """A small text file (a report) written beside its place and renamed into it."""
    p = Path(path)
    tmp = partial_path(p)
    try:
        tmp.write_text(text)
        os.replace(tmp, p)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"could not write {str(path)!r}: {e.strerror or e}") from None
    return p


def partial_path(path) -> Path:
    """The temporary file an output is written to before it is renamed into place."""
    p = Path(path)
    return p.with_name(f".{p.stem}.partial-{os.getpid()}{p.suffix}")


def save_image(image, path, bit_depth: int = 8, dpi: float = 300.0, quality: int = 92,
               overwrite: bool = False, pyramid: bool = False, tmp: Path | None = None, gray: bool = False) -> Path:
    """Write float [0, 1] RGB (numpy array, memmap or vips image) to ``path`` atomically: into a
    temporary file beside it (``tmp``, default ``partial_path``), renamed into place; on any
    failure nothing is left behind.  TIFF is tiled, BigTIFF above 3.5 GiB of pixels, and with
    ``pyramid`` holds the image at every power-of-two reduction for viewers of huge images.
    ``gray`` writes one band, the luminance (without an ICC profile: the sRGB one is for three)."""
    p = check_output_path(path, overwrite)
    ext = check_format(p, bit_depth, pyramid)
    im = image if isinstance(image, pyvips.Image) else vips_from_array(image)
    if gray:
        im = im.recomb([[0.2126, 0.7152, 0.0722]])
    scale = 65535.0 if bit_depth == 16 else 255.0
    im = (im * scale + 0.5).cast("ushort" if bit_depth == 16 else "uchar")  # cast clips to range
    space = ("grey16" if bit_depth == 16 else "b-w") if gray else ("rgb16" if bit_depth == 16 else "srgb")
    im = im.copy(interpretation=space, xres=dpi / 25.4, yres=dpi / 25.4)
    kw = dict(profile="none" if gray else "srgb", strip=False)
    if ext in (".tif", ".tiff"):
        big = im.width * im.height * im.bands * (bit_depth // 8) > 3.5 * 2**30
        kw.update(compression="deflate", predictor="horizontal", tile=True, tile_width=256,
                  tile_height=256, resunit="inch", bigtiff=big, pyramid=bool(pyramid))
    elif ext in (".jpg", ".jpeg", ".webp"):
        kw.update(Q=int(quality))
    elif ext == ".png":
        kw.update(bitdepth=bit_depth, compression=6)
    kw.pop("strip")
    tmp = Path(tmp) if tmp is not None else partial_path(p)
    im = release_while_written(im, image)  # (a disk-backed canvas: read a window at a time)
    try:
        getattr(im, WRITERS[ext])(str(tmp), **kw)
        os.replace(tmp, p)
    except pyvips.Error as e:
        raise OutputError(f"-o: could not write {str(path)!r}: {_vips_message(e)}") from None
    except OSError as e:  # e.g. the rename into a read-only folder or onto another file system
        raise OutputError(f"-o: could not write {str(path)!r}: {e.strerror or e}") from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%dx%d, %d-bit, %g dpi)", p, im.width, im.height, bit_depth, dpi)
    return p


WRAP_PAD = 8  # px of the neighbouring periods a wrapped resize sees: more than the cubic kernel reaches


def resize(arr: np.ndarray, width: int, height: int, out: np.ndarray | None = None, wrap: bool = False) -> np.ndarray:
    """Resample float32 (H, W, 3) to exactly (height, width, 3) with a cubic kernel, via libvips,
    in strips straight into ``out`` (RAM or memmap): no second full-size copy is held.  With
    ``wrap`` the image is taken as one period of a repeating pattern (a seamless texture): the
    kernel reads across its edges into the next period (libvips repeats it lazily), not an edge
    extended, so the result wraps as exactly as the input."""
    h0, w0 = arr.shape[:2]
    im = vips_from_array(np.ascontiguousarray(arr, dtype=np.float32))  # (a view: not a memmap)
    if wrap:
        p = WRAP_PAD
        im = im.embed(p, p, w0 + 2 * p, h0 + 2 * p, extend="repeat")
    im = im.resize(width / w0, vscale=height / h0, kernel="cubic")
    if wrap:
        x, y = round(WRAP_PAD * width / w0), round(WRAP_PAD * height / h0)
        im = im.crop(x, y, min(width, im.width - x), min(height, im.height - y))
    if (im.width, im.height) != (width, height):
        im = im.crop(0, 0, min(width, im.width), min(height, im.height)).gravity(
            "north-west", width, height, extend="copy")
    return fetch_into(im, out, source=arr)
