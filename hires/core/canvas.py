"""Full-resolution buffers of a level: in RAM when the plan says they fit, else disk-backed.

A disk-backed buffer is a file memmap in the work folder.  Pages touched while a tile is worked
on count toward the process's resident memory, so ``release`` hands them back to the page cache
after each tile (the data stays in the file); peak RSS then holds one tile's pages, not the
whole canvas.
"""
from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
from pathlib import Path

import numpy as np

from hires.core.errors import OutputError


class Buffers:
    """Allocates level buffers either with numpy (RAM) or as memmaps under ``folder``.

    Every file and folder it creates is recorded, and ``discard`` and ``cleanup`` delete only
    those: a file is never recognised as scratch by its name or its path."""

    def __init__(self, folder: Path | None, disk: bool):
        self.folder = Path(folder).absolute() if folder is not None else None
        self.disk = disk
        self.files: list[Path] = []
        self.folders: list[Path] = []

    def for_level(self, name: str, disk: bool) -> "Buffers":
        """Buffers for one level in a subfolder, recorded here too so ``cleanup`` reaches them."""
        return self._sharing(self.folder / name if self.folder is not None else None, disk)

    def on_disk(self) -> "Buffers":
        """These buffers' folder, always disk-backed (the same record of what was made)."""
        return self._sharing(self.folder, True)

    def _sharing(self, folder: Path | None, disk: bool) -> "Buffers":
        sub = Buffers(folder, disk)
        sub.files, sub.folders = self.files, self.folders  # one record for the whole render
        return sub

    def empty(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        if not self.disk:
            return np.empty(shape, np.float32)
        if self.folder is None:
            raise ValueError("disk-backed buffers need a folder")
        missing = [p for p in (self.folder, *self.folder.parents) if not os.path.lexists(p)]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folders.extend(missing)
        for p in (self.folder, self.folder.parent):  # (a folder left by a run of the same pid may be a planted link)
            if not stat.S_ISDIR(os.lstat(p).st_mode):
                raise OutputError(f"--work-dir: {str(p)!r} is not a real folder (a symbolic link?); hires writes "
                                  "its buffers only into folders it made: remove it or give another --work-dir")
        path = self.folder / f"{name}.f32"
        ours, nbytes = path in self.files, 4 * int(np.prod(shape))
        try:
            fh = open(path, "r+b" if ours else "xb")  # "x": a file that is not ours is never opened
        except FileExistsError:
            raise FileExistsError(f"{path} exists and was not made by this render") from None
        try:
            with fh:
                _reserve(fh, nbytes)
        except OSError as e:
            if ours:
                self.files.remove(path)
            path.unlink(missing_ok=True)  # ours either way: made here, or made by this render before
            raise OutputError(f"--work-dir: no room for a {nbytes / 2**20:.0f} MiB level buffer in "
                              f"{str(self.folder)!r} ({e.strerror or e}); free some disk space, "
                              "give another --work-dir or raise --memory") from None
        if not ours:
            self.files.append(path)
        return np.memmap(path, np.float32, mode="r+", shape=shape)

    def zeros(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        a = self.empty(name, shape)
        if not self.disk:  # a new file memmap is already zero-filled
            a.fill(0.0)
        return a

    def owns(self, arr) -> bool:
        p = path_of(arr) if arr is not None else None
        return p is not None and p in self.files

    def discard(self, arr) -> None:
        """Free a level buffer; a disk-backed one this object made loses its file too."""
        if self.owns(arr):
            p = path_of(arr)
            self.files.remove(p)
            p.unlink(missing_ok=True)

    def cleanup(self) -> None:
        """Delete every file and folder this object (and its levels) created, newest first."""
        for p in reversed(self.files):
            p.unlink(missing_ok=True)
        for d in sorted(set(self.folders), key=lambda d: len(d.parts), reverse=True):
            try:
                d.rmdir()  # only when empty: anything else in it is not ours
            except OSError:
                pass
        self.files.clear()
        self.folders.clear()


def _reserve(fh, nbytes: int) -> None:
    """The file zeroed and ``nbytes`` long, its disk blocks allocated now: pages of a memmap written
    on a full disk would kill the process with SIGBUS, with no error to report.  Where the file
    system cannot allocate ahead (or the OS has no posix_fallocate) the file is left sparse."""
    fh.truncate(0)
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fh.fileno(), 0, nbytes)
            return
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise
    fh.truncate(nbytes)


def path_of(arr: np.ndarray) -> Path | None:
    return Path(arr.filename) if isinstance(arr, np.memmap) and arr.filename else None


def release(*arrays: np.ndarray) -> None:
    """Drop the resident pages of disk-backed arrays (no-op for RAM arrays)."""
    for a in arrays:
        m = getattr(a, "_mmap", None) if isinstance(a, np.memmap) else None
        if m is not None:
            a.flush()
            m.madvise(mmap.MADV_DONTNEED)


def reset_peak_rss() -> bool:
    """Start this process's peak resident memory afresh from its current size (Linux: writing 5 to
    /proc/self/clear_refs), so a long-lived process (a cluster worker) can measure one job."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """This process's own peak resident memory: VmHWM of /proc/self/status (the high-water mark of
    its address space since exec).  getrusage's ru_maxrss is not that on Linux: it keeps, across
    exec, the peak of the process that spawned it, so a child of a large process reports the
    parent's size."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss_bytes() -> int:
    """This process's resident memory now (VmRSS; its peak where /proc is not there)."""
    now = _status_bytes("VmRSS")
    return now if now is not None else peak_rss_bytes()


# ---------------------------------------------------------------- the C heap

def _libc():
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None
    except OSError:  # not glibc (macOS, Windows): its allocator returns memory its own way
        return None


_LIBC = _libc()
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
PROMPT_THRESHOLD = 1 << 20


def _tuning() -> bool:
    """Whether hires tunes glibc's heap: glibc is there, and the user has not set its own tunable."""
    return _LIBC is not None and "MALLOC_MMAP_THRESHOLD_" not in os.environ


def return_memory_promptly(threshold: int = PROMPT_THRESHOLD) -> None:
    """Make glibc give freed blocks of 1 MiB and more straight back to the OS.

    By default glibc raises its mmap threshold each time a large block is freed, so tile-sized
    numpy and torch temporaries end up in the heap, where freed memory stays resident: measured
    on a 592 px relu3_1 tile, peak RSS 1420 -> 1306 MiB and 756 -> 531 MiB held after the tile.
    glibc's own tunable ``MALLOC_MMAP_THRESHOLD_`` in the environment, when set, is left in force.
    """
    if _tuning():
        _LIBC.mallopt(_M_MMAP_THRESHOLD, threshold)


@contextlib.contextmanager
def reuse_memory(limit: int = 1 << 30, give_back: bool = True):
    """Inside: blocks up to ``limit`` come from glibc's heap and freed ones are kept for reuse, not
    unmapped.  For a tile's loss evaluations, which free and allocate the same activation-sized
    blocks each time: a fresh mapping costs a page fault per 4 KiB on first touch, a third of an
    evaluation's time at 1024 px (benchmarks/results/layers.json).  On leaving, the heap's free
    pages go back to the OS and blocks of 1 MiB and more are mapped again (see
    ``return_memory_promptly``)."""
    if not _tuning():
        yield
        return
    _LIBC.mallopt(_M_MMAP_THRESHOLD, limit)
    _LIBC.mallopt(_M_TRIM_THRESHOLD, limit)
    try:
        yield
    finally:
        _LIBC.mallopt(_M_MMAP_THRESHOLD, PROMPT_THRESHOLD)
        if give_back:
            give_back_memory()


def give_back_memory() -> None:
    """The heap's free pages back to the OS, and its top trimmed again as glibc does by default."""
    if _tuning():
        _LIBC.mallopt(_M_TRIM_THRESHOLD, 128 << 10)
    trim()


def trim() -> None:
    """Hand freed heap pages back to the OS (after a tile, before the next one allocates)."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
