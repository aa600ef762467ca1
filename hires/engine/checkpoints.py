"""A render's resume checkpoints in its work folder (hires.engine.workfolder): each finished level,
each finished tile of a level under way, and the state record that names them, every one checked
when it is read back (an earlier run, or anyone, may have written it).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hires.core.canvas import path_of
from hires.core.errors import OutputError
from hires.core.safefiles import NPY_HEADER_BYTES, load_npz
from hires.engine.tiles import Tile
from hires.engine.workfolder import STATE, TILE_RE, MadeFile, WorkFolder, is_checkpoint


def _whole(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63


def _valid_state(state) -> bool:
    if not isinstance(state, dict) or not isinstance(state.get("key"), str):
        return False
    level, shape, partial = state.get("level"), state.get("shape"), state.get("partial_output")
    small = (lambda v: _whole(v) and v < 2**31)
    return ((level is None or small(level))
            and (shape is None or (isinstance(shape, list) and len(shape) == 3 and all(map(small, shape))))
            and (partial is None or isinstance(partial, str) or _valid_record(partial)))


def _valid_record(rec) -> bool:
    return (isinstance(rec, dict) and isinstance(rec.get("path"), str) and _whole(rec.get("dev"))
            and _whole(rec.get("ino")))


def fingerprint(stats: dict) -> str:
    """A digest of a pass's whole-image statistics: saved tiles belong to the pass whose
    statistics they were refined against, and are used again only with the same statistics."""
    h = hashlib.sha256()
    for name in sorted(stats):
        h.update(name.encode())
        h.update(np.ascontiguousarray(stats[name].gram).tobytes())
        h.update(np.ascontiguousarray(stats[name].mean).tobytes())
        h.update(repr(stats[name].count).encode())
    return h.hexdigest()[:16]


def _copy_file(source, dest) -> None:
    """The whole of ``source`` into ``dest`` (binary file objects) by the kernel (sendfile), never
    through Python's memory; in blocks where the system has no sendfile."""
    dest.flush()
    if not hasattr(os, "sendfile"):
        shutil.copyfileobj(source, dest, 16 << 20)
        return
    size, done = os.fstat(source.fileno()).st_size, 0
    while done < size:
        sent = os.sendfile(dest.fileno(), source.fileno(), done, size - done)
        if sent == 0:
            raise OSError(errno.EIO, f"the copy stopped at {done} of {size} bytes")
        done += sent


class _Damaged(Exception):
    """A checkpoint that is not what hires wrote (unreadable, wrong shape, not finite)."""


@dataclass(frozen=True)
class Restored:
    """What ``Checkpoints.restore_tiles`` put back: the tiles' indices, in order, and the index of a
    damaged saved tile it met (None: none), which is refined again with those after it."""
    tiles: list[int]
    damaged: int | None


def _blend_rows_cols(tile: Tile, shape) -> tuple[np.ndarray, np.ndarray]:
    """Canvas rows and columns a tile's blend writes (they wrap around a seamless canvas)."""
    y0, y1, x0, x1 = tile.blend
    return np.arange(y0, y1) % shape[0], np.arange(x0, x1) % shape[1]


class Checkpoints:
    """Finished levels saved in a work folder, so a crashed render resumes where it stopped.

    A level is stored as raw float32 (copied file to file when the canvas is disk-backed, so a
    checkpoint never pulls a whole canvas into memory).  ``state.json`` names the level, its
    shape and the key of the render's inputs and settings: another render's state is ignored."""

    def __init__(self, folder: WorkFolder | None, key: str):
        self.folder, self.key = folder, key

    def stale(self) -> bool:
        """The folder holds another render's state (other inputs or settings)."""
        state = self._state() if self.folder is not None else None
        return state is not None and state.get("key") != self.key

    def resumable(self) -> bool:
        """A finished level or tile of this render is saved."""
        if self.folder is None or self._state_key() != self.key:
            return False
        return self.latest() is not None or any(TILE_RE.match(name) for name in self.folder.dir.names())

    def clear(self) -> None:
        """Forget every checkpoint (``--fresh``, or another render's state)."""
        if self.folder is None:
            return
        for name in self.folder.dir.names():
            if is_checkpoint(name):
                self.folder.dir.unlink(name)

    def _state(self) -> dict | None:
        """The state record, if it is one hires could have written: an earlier run (or anyone)
        may have edited it, so every field is checked for its type, and a record that fails is
        no state at all (the render starts afresh; what the record names is never touched)."""
        try:
            state = json.loads(self.folder.dir.read(STATE, 1 << 20))
        except (OSError, ValueError):
            return None
        return state if _valid_state(state) else None

    def latest(self) -> tuple[int, np.ndarray] | None:
        """(level, read-only float32 memmap) of the last finished level of this render, if any."""
        state = self._state() if self.folder is not None else None
        if state is None or state.get("key") != self.key or state.get("level") is None:
            return None
        try:
            shape = tuple(state["shape"])  # (None in an edited state: no checkpoint)
            with self.folder.dir.open_read(f"level{state['level']}.f32") as fh:
                if os.fstat(fh.fileno()).st_size != 4 * int(np.prod(shape)):
                    return None
                data = np.memmap(fh, np.float32, mode="r", shape=shape)
            return int(state["level"]), data
        except (OSError, ValueError, TypeError):
            return None

    def save(self, level: int, canvas: np.ndarray) -> None:
        if self.folder is None:
            return
        try:
            self._save(level, canvas)
        except OSError as e:
            raise OutputError(f"--work-dir: could not save level {level} in {str(self.folder.path)!r} "
                              f"({e.strerror or e}); free some disk space or give another --work-dir") from None

    def _save(self, level: int, canvas: np.ndarray) -> None:
        previous = self._state()
        src = path_of(canvas)
        with self.folder.dir.replacing(f"level{level}.f32") as fh:
            if src is not None:  # (a buffer of this render's scratch), copied file to file by the kernel
                canvas.flush()
                with open(src, "rb") as source:
                    _copy_file(source, fh)
            else:
                canvas.tofile(fh)
        self._write_state({"key": self.key, "level": level, "shape": list(canvas.shape)})
        self.clear_tiles(level)
        if previous and previous.get("level") not in (None, level):  # the checkpoint this one replaces
            self.folder.dir.unlink(f"level{int(previous['level'])}.f32")

    # ------------------------------------------------------------ tiles of an unfinished pass

    @staticmethod
    def _tile_name(level: int, pass_index: int, tile: int) -> str:
        return f"tile-L{level}-P{pass_index}-T{tile:05d}.npz"

    def save_tile(self, level: int, pass_index: int, tile: Tile, stats_key: str,
                  canvas: np.ndarray, wsum: np.ndarray) -> None:
        """The canvas and weight-sum values a finished tile wrote (its blend area), atomically,
        with the key of the render and of the pass's statistics."""
        if self.folder is None:
            return
        rows, cols = _blend_rows_cols(tile, canvas.shape)
        try:
            with self.folder.dir.replacing(self._tile_name(level, pass_index, tile.index)) as fh:
                np.savez(fh, canvas=canvas[np.ix_(rows, cols)], wsum=wsum[np.ix_(rows, cols)],
                         key=np.array(f"{self.key}:{stats_key}"))
        except OSError as e:
            raise OutputError(f"--work-dir: could not save a tile in {str(self.folder.path)!r} "
                              f"({e.strerror or e}); free some disk space or give another --work-dir") from None

    def restore_tiles(self, level: int, pass_index: int, tiles: list[Tile], stats_key: str,
                      canvas: np.ndarray, wsum: np.ndarray) -> Restored:
        """Put the saved tiles of this pass back into ``canvas`` and ``wsum``, in order.  Tiles are
        refined in order, so the saved ones are the first k; any saved for other statistics, or
        after a gap, are deleted and refined again.  A saved tile that cannot be read whole, has
        the wrong shape or holds a value that is not finite (a disk, a crash, a sync tool) is
        damaged: it and the tiles after it are refined again, and ``Restored.damaged`` names it."""
        if self.folder is None or self._state_key() != self.key:
            return Restored([], None)
        done, damaged = [], None
        for tile in tiles:
            rows, cols = _blend_rows_cols(tile, canvas.shape)
            try:
                saved = self._read_tile(level, pass_index, tile.index, f"{self.key}:{stats_key}",
                                        (len(rows), len(cols), canvas.shape[2]))
            except _Damaged:
                damaged = tile.index
                break
            if saved is None:
                break
            canvas[np.ix_(rows, cols)], wsum[np.ix_(rows, cols)] = saved
            done.append(tile.index)
        for name in self.folder.dir.names():  # the rest are refined again
            m = TILE_RE.match(name)
            if m and (int(m.group(1)), int(m.group(2))) == (level, pass_index) and int(m.group(3)) not in done:
                self.folder.dir.unlink(name)
        return Restored(done, damaged)

    def _read_tile(self, level: int, pass_index: int, index: int, key: str, shape: tuple) -> tuple | None:
        """(canvas values, weight sums) of a saved tile whose blend area is ``shape`` (h, w, bands);
        None when there is none, or it was saved for other statistics; _Damaged when it cannot be
        what ``save_tile`` wrote."""
        try:
            with self.folder.dir.open_read(self._tile_name(level, pass_index, index)) as fh, \
                    load_npz(fh, 4 * int(np.prod(shape)) + NPY_HEADER_BYTES) as z:
                if z["key"].dtype.kind != "U" or str(z["key"]) != key:
                    return None
                values, weights = z["canvas"], z["wsum"]
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error):
            raise _Damaged from None
        if (values.shape != shape or weights.shape != shape[:2]
                or values.dtype != np.float32 or weights.dtype != np.float32
                or not (np.isfinite(values).all() and np.isfinite(weights).all())):
            raise _Damaged
        return values, weights

    def _state_key(self) -> str | None:
        state = self._state()
        return state.get("key") if state else None

    def begin(self) -> None:
        """Mark the folder as this render's (tiles saved before any level is finished need it)."""
        if self.folder is not None and self._state_key() != self.key:
            self._write_state({"key": self.key, "level": None, "shape": None})

    def _write_state(self, state: dict) -> None:
        self.folder.dir.write_text(STATE, json.dumps(state))

    def remember_partial_output(self, path: Path | None, made: os.stat_result | None = None) -> None:
        """Record the temporary output file this render just created (``made``: its stat), or None
        when it is gone, so a render killed while writing it removes it when run again: the file
        this render made, recognised by its device and inode, never by its name alone."""
        if self.folder is None:
            return
        state = self._state() or {"key": self.key, "level": None, "shape": None}
        state["partial_output"] = None if path is None else {
            "path": os.path.abspath(path), "dev": made.st_dev, "ino": made.st_ino}
        self._write_state(state)

    def partial_output(self) -> MadeFile | None:
        """The temporary output the state records (a record of older hires, a bare path, has no
        device and inode: ``MadeFile.is_still`` is then never true)."""
        state = self._state() if self.folder is not None else None
        rec = state.get("partial_output") if state and state.get("key") == self.key else None
        if isinstance(rec, str) and rec:
            return MadeFile(Path(rec), None, None)
        if isinstance(rec, dict):
            return MadeFile(Path(rec["path"]), rec["dev"], rec["ino"])
        return None

    def clear_tiles(self, level: int) -> None:
        if self.folder is None:
            return
        for name in self.folder.dir.names():
            m = TILE_RE.match(name)
            if m and int(m.group(1)) <= level:
                self.folder.dir.unlink(name)
