"""Writing outputs: the path and format checked before a render, the pixels written through a
temporary file hires creates beside the output (16-bit TIFF/PNG, DPI, sRGB profile, a pyramid), then
linked into place without ever replacing a file (``publish``); and small text files written
atomically.  Reading is ``hires.core.io``.
"""
from __future__ import annotations

import errno
import logging
import os
import secrets
import shutil
from pathlib import Path

import numpy as np
import pyvips

from hires.core.canvas import release
from hires.core.errors import OptionError, OutputError
from hires.core.io import _vips_message, vips_from_array
from hires.core.safefiles import NEW_FILE

log = logging.getLogger(__name__)

WRITERS = {".png": "pngsave", ".jpg": "jpegsave", ".jpeg": "jpegsave", ".webp": "webpsave",
           ".tif": "tiffsave", ".tiff": "tiffsave"}


def check_place(p: Path, label: str, error=OutputError, example: str = "out.png") -> None:
    """Raise ``error`` naming ``label`` unless a file can be made at ``p``: its folder exists and
    is writable, and ``p`` is not a folder."""
    folder = p.parent if str(p.parent) else Path(".")
    if not folder.is_dir():
        raise error(f"{label}: folder {str(folder)!r} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise error(f"{label}: folder {str(folder)!r} is not writable")
    if p.is_dir():
        raise error(f"{label}: {str(p)!r} is a folder; give a file name such as {example}")


def check_output_path(path, overwrite: bool = False, suffixes=WRITERS, example: str = "out.png") -> Path:
    """Raise before any work if ``path`` cannot be written (its extension not one of ``suffixes``:
    by default an image's), or exists and ``overwrite`` is off."""
    p = Path(path)
    if p.suffix.lower() not in suffixes:
        raise OutputError(f"-o: {str(path)!r} has no known image extension; use one of {', '.join(sorted(WRITERS))}"
                          if suffixes is WRITERS else f"-o: {str(path)!r} is not a {'/'.join(suffixes)} name; e.g. {example}")
    check_place(p, "-o", OutputError, example)
    if os.path.lexists(p) and not overwrite:  # (a dangling symlink is a name that exists, too)
        raise OutputError(f"-o: {str(path)!r} exists; give another name or pass --overwrite to replace it")
    return p


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
    """A small text file (a report) written beside its place and renamed into it (the caller has
    checked that what it replaces is hires' own)."""
    p = Path(path)
    tmp = partial_path(p)
    try:
        create_exclusively(tmp)  # (a file already at that name is not ours: it stays)
    except OSError as e:
        raise _write_error(path, tmp, len(text.encode()), e) from None
    try:
        tmp.write_text(text)
        os.replace(tmp, p)
    except OSError as e:
        raise _write_error(path, tmp, len(text.encode()), e) from None
    finally:
        tmp.unlink(missing_ok=True)
    return p


PARTIAL_INFIX = ".partial-"


def partial_path(path) -> Path:
    """A new name for the temporary file an output is written to before it is linked into place:
    ``.NAME.partial-PID-TOKEN.EXT`` beside it (``is_partial_of`` recognises the pattern)."""
    p = Path(path)
    return p.with_name(f".{p.stem}{PARTIAL_INFIX}{os.getpid()}-{secrets.token_hex(4)}{p.suffix}")


def is_partial_of(candidate, output) -> bool:
    """``candidate`` is a name ``partial_path(output)`` makes: beside ``output``, of its pattern."""
    c, o = Path(candidate), Path(output)
    if os.path.abspath(c.parent) != os.path.abspath(o.parent):
        return False
    head, tail = f".{o.stem}{PARTIAL_INFIX}", o.suffix
    middle = c.name[len(head):len(c.name) - len(tail)] if c.name.startswith(head) and c.name.endswith(tail) else ""
    pid, _, token = middle.partition("-")
    return pid.isdigit() and len(token) == 8 and all(ch in "0123456789abcdef" for ch in token)


def create_exclusively(tmp: Path) -> os.stat_result:
    """Make ``tmp`` as a new, empty regular file of ours (never through a symlink, never over a
    file that exists), so what is written into it and later removed is ours; returns its stat."""
    fd = os.open(tmp, NEW_FILE, 0o666)
    try:
        return os.fstat(fd)
    finally:
        os.close(fd)


# a file system without hard links says so with one of these
_NO_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.ENOSYS}


def publish(tmp: Path, target: Path, overwrite: bool = False) -> None:
    """Put the finished ``tmp`` at ``target``.  Without ``overwrite`` a file (or a symlink, even a
    dangling one) that is at ``target`` now, whenever it appeared, is never replaced: ``tmp`` is
    hard-linked into place, which fails if the name exists; on a file system without hard links,
    the name is first claimed with an exclusive create."""
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        try:
            os.link(tmp, target, follow_symlinks=False)
        except OSError as e:
            if isinstance(e, FileExistsError) or e.errno not in _NO_LINKS:
                raise
            create_exclusively(target)  # the name is ours now: moving onto it replaces only our claim
            os.replace(tmp, target)
            return
    except FileExistsError:
        raise OutputError(f"-o: {str(target)!r} exists (it appeared while hires was rendering) and was left as it "
                          "is; run again with --overwrite to replace it (the work done is kept), or with another -o"
                          ) from None
    os.unlink(tmp)


def _write_error(path, tmp: Path, need_bytes: int, e: Exception) -> OutputError:
    """One line for a failed write: a full disk is said as such (libvips reports it as 'Unknown
    error -1' or 'unable to write to target'), with the space the file needed."""
    try:
        free = shutil.disk_usage(tmp.parent).free  # (the partial file still holds what was written)
    except OSError:
        free = None
    nospace = isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if nospace or (free is not None and free < FULL_BELOW):
        left = f"{free / 2**20:.1f} MiB free" if free is not None else "no space left"
        return OutputError(f"-o: could not write {str(path)!r}: the disk holding {str(tmp.parent)!r} is full "
                           f"({left}; the file needs up to {need_bytes / 2**20:.1f} MiB); free some space or write "
                           "to another disk")
    detail = _vips_message(e) if isinstance(e, pyvips.Error) else (getattr(e, "strerror", None) or str(e))
    return OutputError(f"-o: could not write {str(path)!r}: {detail}")


FULL_BELOW = 1 << 20  # free bytes under which a failed write is taken for a full disk


def save_image(image, path, bit_depth: int = 8, dpi: float = 300.0, quality: int = 92,
               overwrite: bool = False, pyramid: bool = False, tmp: Path | None = None, gray: bool = False,
               on_created=None) -> Path:
    """Write float [0, 1] RGB (numpy array, memmap or vips image) to ``path`` atomically: into a
    temporary file hires creates beside it (``tmp``, default ``partial_path``), then ``publish``ed
    (a file at ``path`` is replaced only with ``overwrite``, even one that appeared during the
    write); on any failure nothing is left behind.  TIFF is tiled, BigTIFF above 3.5 GiB of
    pixels, and with ``pyramid`` holds the image at every power-of-two reduction for viewers of
    huge images.  ``gray`` writes one band, the luminance (without an ICC profile: the sRGB one
    is for three).  ``on_created(tmp, stat)`` hears of the temporary file once it is made, before
    anything is written into it (a render records it, to remove it after a crash)."""
    p = check_output_path(path, overwrite=True)  # (a file at ``path`` is ``publish``'s to refuse)
    ext = check_format(p, bit_depth, pyramid)
    im = image if isinstance(image, pyvips.Image) else vips_from_array(image)
    if gray:
        im = im.recomb([[0.2126, 0.7152, 0.0722]])
    scale = 65535.0 if bit_depth == 16 else 255.0
    im = (im * scale + 0.5).cast("ushort" if bit_depth == 16 else "uchar")  # cast clips to range
    space = ("grey16" if bit_depth == 16 else "b-w") if gray else ("rgb16" if bit_depth == 16 else "srgb")
    im = im.copy(interpretation=space, xres=dpi / 25.4, yres=dpi / 25.4)
    kw = dict(profile="none" if gray else "srgb")
    if ext in (".tif", ".tiff"):
        big = im.width * im.height * im.bands * (bit_depth // 8) > 3.5 * 2**30
        kw.update(compression="deflate", predictor="horizontal", tile=True, tile_width=256,
                  tile_height=256, resunit="inch", bigtiff=big, pyramid=bool(pyramid))
    elif ext in (".jpg", ".jpeg", ".webp"):
        kw.update(Q=int(quality))
    elif ext == ".png":
        kw.update(bitdepth=bit_depth, compression=6)
    tmp = Path(tmp) if tmp is not None else partial_path(p)
    im = release_while_written(im, image)  # (a disk-backed canvas: read a window at a time)
    need = im.width * im.height * im.bands * (bit_depth // 8)
    try:
        made = create_exclusively(tmp)  # (a file already at that name is not ours: it stays)
    except OSError as e:
        raise _write_error(path, tmp, need, e) from None
    try:  # the partial file is ours from here on, removed whatever happens
        if on_created is not None:
            on_created(tmp, made)
        getattr(im, WRITERS[ext])(str(tmp), **kw)
        publish(tmp, p, overwrite)
    except (pyvips.Error, OSError) as e:  # OSError: e.g. a read-only folder, another file system
        raise _write_error(path, tmp, need, e) from None
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s (%dx%d, %d-bit, %g dpi)", p, im.width, im.height, bit_depth, dpi)
    return p
