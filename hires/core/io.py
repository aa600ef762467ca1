"""Image input and output through pyvips.

Reading: JPEG, PNG, TIFF and WebP only (the file's contents decide, checked before any pixel
is read: libvips' other loaders, SVG among them, can pull in other files), 8 or 16 bit or
float (scRGB), grey, RGB or CMYK, with or without alpha.  EXIF orientation is applied, any
embedded ICC profile is converted to sRGB, alpha is flattened onto white, and images are read
as a stream and shrunk as they are read, so a 20000 px input is never decoded at full size
when a small level is wanted; an input whose decoder must hold the whole image at once (an
interlaced PNG, a progressive JPEG, a WebP) is refused when that would not fit the memory
budget.  Pixels come back as float32 RGB in [0, 1], shape (H, W, 3).

Writing: PNG (8/16 bit), JPEG, WebP, TIFF (8/16 bit, deflate, tiled; BigTIFF when large), all
with DPI and an embedded sRGB profile.  Every write goes to a temporary file hires creates
beside the target, then is linked into place so that a file which appeared at the target in
the meantime is never replaced (only ``overwrite`` replaces), so a crash never leaves a
half-written output and no write loses a file hires did not make.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pyvips

from hires.core import colour
from hires.core.canvas import release
from hires.core.errors import InputError
from hires.core.safefiles import not_regular

log = logging.getLogger(__name__)



def _vips_message(e: Exception) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1] if lines else str(e)


def check_readable(path, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{what}: {str(path)!r} does not exist; check the path")
    if p.is_dir():
        raise InputError(f"{what}: {str(path)!r} is a folder; give an image file")
    try:
        kind = not_regular(p)  # a FIFO would block the first read forever; a device is no image
    except OSError as e:
        raise InputError(f"{what}: {str(path)!r} cannot be read ({e.strerror or e})") from None
    if kind:
        raise InputError(f"{what}: {str(path)!r} is {kind}, not a regular file; give an image file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{what}: {str(path)!r} cannot be read; check its permissions")
    return p


# libvips' loaders hires uses, by the class libvips picks from a file's contents; every other
# loader (SVG, PDF, CSV, Matlab, libvips' own format, ...) is refused before it reads anything
LOADERS = {"VipsForeignLoadJpegFile": "JPEG", "VipsForeignLoadPngFile": "PNG", "VipsForeignLoadSpngFile": "PNG",
           "VipsForeignLoadTiffFile": "TIFF", "VipsForeignLoadWebpFile": "WebP"}
FORMATS = "JPEG, PNG, TIFF, WebP"


def loader_of(path) -> str | None:
    """The libvips loader class that would read ``path`` (from its first bytes), or None."""
    name = pyvips.vips_lib.vips_foreign_find_load(str(path).encode())
    return None if name == pyvips.ffi.NULL else pyvips.ffi.string(name).decode()


def _embedded(path) -> bytes | None:
    """The JPEG bytes of an image held in a file rather than being one (a source with a ``jpeg()``
    method: a painting embedded in a fitted style, hires.fast.hstyle.Embedded), else None."""
    return path.jpeg() if callable(getattr(path, "jpeg", None)) else None


def _open_header(path, what: str) -> pyvips.Image:
    data = _embedded(path)
    if data is not None:  # (hires.fast.hstyle checked the file and that this is a JPEG)
        try:
            return pyvips.Image.new_from_buffer(data, "", access="sequential")
        except pyvips.Error as e:
            raise InputError(f"{what}: the painting in {str(path)!r} cannot be read: {_vips_message(e)}") from None
    p = check_readable(path, what)
    loader = loader_of(p)
    if loader not in LOADERS:
        kind = f" (libvips would read it as {loader.removeprefix('VipsForeignLoad').removesuffix('File')})" \
            if loader else ""
        raise InputError(f"{what}: {str(path)!r} is not a {FORMATS} image{kind}; convert it to one of those")
    try:
        return pyvips.Image.new_from_file(str(p), access="sequential")
    except pyvips.Error as e:
        raise InputError(f"{what}: {str(path)!r} is not an image hires can read ({FORMATS}): "
                         f"{_vips_message(e)}") from None


def _whole_image_decoder(im: pyvips.Image) -> str | None:
    """Why the file's decoder holds the whole image at once (None when it streams rows)."""
    loader = im.get("vips-loader") if im.get_typeof("vips-loader") else ""
    flag = (lambda name: im.get_typeof(name) and im.get(name))
    if loader == "pngload" and flag("interlaced"):
        return "an interlaced PNG"
    if loader == "jpegload" and flag("jpeg-multiscan"):
        return "a progressive JPEG"
    if loader == "webpload":
        return "a WebP"
    return None


_SAMPLE_BYTES = {"uchar": 1, "char": 1, "ushort": 2, "short": 2, "uint": 4, "int": 4, "float": 4,
                 "complex": 8, "double": 8, "dpcomplex": 16}
DECODE_SHARE = 0.5  # of the memory budget, at most, for one input's decoder


def decode_bytes(im: pyvips.Image) -> int:
    """Memory the decoder of ``im``'s file needs at once: the whole image for a decoder that cannot
    stream (see ``_whole_image_decoder``), else a band of rows (libvips' sequential read)."""
    row = im.width * im.bands * _SAMPLE_BYTES[im.format]
    return row * im.height if _whole_image_decoder(im) else row * 512


def check_decode_budget(path, budget: int | None, what: str = "image") -> pyvips.Image:
    """Refuse, before decoding, an input whose decoder would need more than DECODE_SHARE of the
    memory budget (``budget`` bytes) at once, naming its pixel size; returns its header."""
    im = _open_header(path, what)
    need = decode_bytes(im)
    if budget is not None and need > DECODE_SHARE * budget:
        kind = _whole_image_decoder(im)
        raise InputError(
            f"{what}: {str(path)!r} is {im.width}x{im.height} px, {kind} that is decoded whole: "
            f"{need / 2**30:.2f} GiB at once, and one input's decoding may take at most half of --memory "
            f"({DECODE_SHARE * budget / 2**30:.2f} of {budget / 2**30:.2f} GiB); save it as a baseline JPEG, a "
            "non-interlaced PNG or a TIFF (read as a stream), or raise --memory")
    return im


def _display_size(im: pyvips.Image) -> tuple[int, int]:
    """(width, height) as displayed, i.e. after EXIF orientation."""
    return (im.height, im.width) if _orientation(im) in (5, 6, 7, 8) else (im.width, im.height)


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
        data = _embedded(path)
        if data is not None:
            im = pyvips.Image.thumbnail_buffer(data, tw, height=th, size="both", crop="centre",
                                               export_profile="srgb", option_string="fail_on=error")
        elif _high_depth(header):
            im = _high_depth_at(path, header, tw, th, what)
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


def _high_depth_at(path, header: pyvips.Image, tw: int, th: int, what: str) -> pyvips.Image:
    """A 16-bit or float file as 16-bit sRGB covering (tw, th) displayed px, centre-cropped: read
    as a stream and shrunk as it is read (libvips' thumbnail, which shrinks on load, gives 8 bits),
    so only the shrunk image is ever held whole (to apply an EXIF rotation)."""
    im = pyvips.Image.new_from_file(str(path), access="sequential", fail_on="error")
    if im.format in ("float", "double"):
        im = _float_as_rgb16(im, path, what)
    elif im.get_typeof("icc-profile-data"):
        im = im.icc_transform("srgb", embedded=True, depth=16)
    w0, h0 = _display_size(header)
    scale = max(tw / w0, th / h0)
    im = im.resize(scale, kernel="lanczos3")
    if _orientation(header) != 1:  # rotating reads the image out of order: hold the shrunk one
        im = im.copy_memory().autorot()
    return im.crop((im.width - min(tw, im.width)) // 2, (im.height - min(th, im.height)) // 2,
                   min(tw, im.width), min(th, im.height))


def _float_as_rgb16(im: pyvips.Image, path, what: str) -> pyvips.Image:
    """A float file as 16-bit sRGB: by the convention of float TIFFs (libvips' scRGB), linear
    light with 0..1 from black to white, grey or RGB, with or without alpha (0..1)."""
    colours = im.bands - int(im.hasalpha())
    if colours not in (1, 3) or im.interpretation in ("cmyk", "lab", "labs", "lch", "xyz", "yxy", "hsv", "cmc"):
        raise InputError(f"{what}: {str(path)!r} is a floating-point image with {im.bands} band(s) "
                         f"({im.interpretation}); hires reads float images as linear grey or RGB (scRGB); "
                         "save it as a 16-bit TIFF or PNG")
    im = im.cast("float")
    if im.hasalpha():
        im = im.flatten(background=[1.0] * colours, max_alpha=1.0)
    if colours == 1:
        im = im.bandjoin([im, im])
    return im.copy(interpretation="scrgb").colourspace("rgb16")


def _orientation(im: pyvips.Image) -> int:
    try:
        return int(im.get("orientation")) if im.get_typeof("orientation") else 1
    except pyvips.Error:
        return 1


def is_gray(path, what: str = "image") -> bool:
    """A one-band (or band + alpha) file, or colour channels that agree everywhere (at 128 px)."""
    im = _open_header(path, what)
    if im.bands - int(im.hasalpha()) == 1:
        return True
    return colour.is_gray(load_image(path, long_side=128, what=what))


def check_decodes(path, what: str = "image", budget: int | None = None) -> tuple[int, int]:
    """Decode the whole file once at a small size, so a corrupt input fails before any work (and
    first refuse, undecoded, one whose decoder would not fit ``budget`` bytes)."""
    header = check_decode_budget(path, budget, what)
    load_image(path, long_side=32, what=what)
    return _display_size(header)






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




























WRAP_PAD = 8  # px of the neighbouring periods a wrapped resize sees: more than the cubic kernel reaches


def resize(arr: np.ndarray, width: int, height: int, out: np.ndarray | None = None, wrap: bool = False) -> np.ndarray:
    """Resample float32 (H, W, 3) to exactly (height, width, 3) with a cubic kernel, via libvips,
    in strips straight into ``out`` (RAM or memmap): no second full-size copy is held.  With
    ``wrap`` the image is taken as one period of a repeating pattern (a seamless texture): the
    kernel reads across its edges into the next period (libvips repeats it lazily), not an edge
    extended, so the result wraps as exactly as the input."""
    return fetch_into(_resized(arr, width, height, wrap), out, source=arr)


def resized_strips(arr: np.ndarray, width: int, height: int, strip: int = 256):
    """(y, rows) of ``resize(arr, width, height)`` a strip of rows at a time, unclipped (``arr`` may
    hold a signed difference), without the full-size result ever being held."""
    region = pyvips.Region.new(_resized(arr, width, height, False))
    for y in range(0, height, strip):
        h = min(strip, height - y)
        yield y, np.frombuffer(region.fetch(0, y, width, h), np.float32).reshape(h, width, -1)


def _resized(arr: np.ndarray, width: int, height: int, wrap: bool) -> pyvips.Image:
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
    return im
