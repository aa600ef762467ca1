"""The work folder of a render: resume checkpoints and disk-backed buffers, and nothing else.

hires deletes only what it created.  Its state lives in a folder of its own, marked by a file
hires writes when it makes the folder; a folder without that mark is never used or removed.
Inside it, files are removed by the names hires gave them, and the folder itself only when
nothing else is left in it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from hires.canvas import path_of
from hires.errors import OutputError
from hires.tiles import Tile

MARKER = "HIRES-WORK-FOLDER"
LOCK = "lock"
LEVEL_RE = re.compile(r"^level\d+\.f32$")
TILE_RE = re.compile(r"^tile-L(\d+)-P(\d+)-T(\d+)\.npz$")


def work_folder_path(output: Path | None, work_dir: str | None) -> Path | None:
    """Where a render keeps its state: ``.NAME.hires-work`` beside the output, or a subfolder
    ``NAME.hires-work`` of ``--work-dir`` (never the user's folder itself)."""
    stem = output.stem if output is not None else "render"
    if work_dir:
        return Path(work_dir) / f"{stem}.hires-work"
    return output.parent / f".{stem}.hires-work" if output is not None else None


class WorkFolder:
    """A folder hires made (it holds the marker file); see the module docstring."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def open(cls, path: Path) -> "WorkFolder":
        path = Path(path)
        if path.exists():
            if not (path / MARKER).is_file():
                raise OutputError(f"--work-dir: {str(path)!r} exists and was not made by hires; "
                                  "move it or give another --work-dir")
            return cls(path)
        if not path.parent.is_dir():  # hires makes its own folder only, never the folders above it
            raise OutputError(f"--work-dir: {str(path.parent)!r} does not exist; create it first or give another "
                              "--work-dir")
        try:
            path.mkdir()
            (path / MARKER).write_text("made by hires for one render's checkpoints and scratch buffers; "
                                       "hires removes it after the render succeeds\n")
        except OSError as e:
            raise OutputError(f"--work-dir: cannot create {str(path)!r} ({e.strerror or e}); "
                              "give a writable --work-dir") from None
        return cls(path)

    def lock(self) -> None:
        """Claim the folder for this process: a second render into the same output would mix
        its checkpoints with ours.  A lock left by a process that no longer runs is taken over."""
        path = self.path / LOCK
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise OutputError(f"another hires (pid {pid}) is rendering into this output (work folder "
                              f"{str(self.path)!r}); wait for it, or write to another file")
        tmp = self.path / f"{LOCK}.{os.getpid()}.partial"
        tmp.write_text(f"{os.getpid()}\n")
        tmp.replace(path)

    def unlock(self) -> None:
        path = self.path / LOCK
        try:
            if int(path.read_text().strip()) == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    def remove(self) -> None:
        """Delete hires' own files, then the folder if nothing else is in it."""
        for p in self.path.iterdir():
            if p.is_file() and (_is_checkpoint(p.name) or p.name in (MARKER, LOCK) or p.name.endswith(".partial")):
                p.unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:  # the user put something in it: leave it, with their files
            pass


def _valid_state(state) -> bool:
    if not isinstance(state, dict) or not isinstance(state.get("key"), str):
        return False
    level, shape, partial = state.get("level"), state.get("shape"), state.get("partial_output")
    whole = (lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31)
    return ((level is None or whole(level))
            and (shape is None or (isinstance(shape, list) and len(shape) == 3 and all(map(whole, shape))))
            and (partial is None or isinstance(partial, str)))


def _is_checkpoint(name: str) -> bool:
    """A file of the resume state: a finished level, a finished tile, or the state record."""
    return bool(LEVEL_RE.match(name) or TILE_RE.match(name)) or name == "state.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


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
        return self.latest() is not None or any(TILE_RE.match(p.name) for p in self.folder.path.iterdir())

    def clear(self) -> None:
        """Forget every checkpoint (``--fresh``, or another render's state)."""
        if self.folder is None:
            return
        for p in self.folder.path.iterdir():
            if p.is_file() and _is_checkpoint(p.name):
                p.unlink(missing_ok=True)

    def _state(self) -> dict | None:
        """The state record, if it is one hires could have written: an earlier run (or anyone)
        may have edited it, so every field is checked for its type, and a record that fails is
        no state at all (the render starts afresh; what the record names is never touched)."""
        try:
            state = json.loads((self.folder.path / "state.json").read_text())
        except (OSError, ValueError):
            return None
        return state if _valid_state(state) else None

    def latest(self) -> tuple[int, np.ndarray] | None:
        """(level, read-only float32 memmap) of the last finished level of this render, if any."""
        state = self._state() if self.folder is not None else None
        if state is None or state.get("key") != self.key or state.get("level") is None:
            return None
        try:
            data = np.memmap(self.folder.path / f"level{int(state['level'])}.f32", np.float32, mode="r",
                             shape=tuple(state["shape"]))
            return int(state["level"]), data
        except (OSError, ValueError, KeyError, TypeError):
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
        root = self.folder.path
        previous = self._state()
        tmp = root / f"level{level}.f32.partial"
        src = path_of(canvas)
        if src is not None:
            canvas.flush()
            shutil.copyfile(src, tmp)
        else:
            canvas.tofile(tmp)
        tmp.replace(root / f"level{level}.f32")
        self._write_state({"key": self.key, "level": level, "shape": list(canvas.shape)})
        self.clear_tiles(level)
        if previous and previous.get("level") not in (None, level):  # the checkpoint this one replaces
            (root / f"level{int(previous['level'])}.f32").unlink(missing_ok=True)

    # ------------------------------------------------------------ tiles of an unfinished pass

    def _tile_path(self, level: int, pass_index: int, tile: int) -> Path:
        return self.folder.path / f"tile-L{level}-P{pass_index}-T{tile:05d}.npz"

    def save_tile(self, level: int, pass_index: int, tile: Tile, stats_key: str,
                  canvas: np.ndarray, wsum: np.ndarray) -> None:
        """The canvas and weight-sum values a finished tile wrote (its blend area), atomically,
        with the key of the render and of the pass's statistics."""
        if self.folder is None:
            return
        rows, cols = _blend_rows_cols(tile, canvas.shape)
        path = self._tile_path(level, pass_index, tile.index)
        tmp = path.with_name(path.name + ".partial")
        try:
            with open(tmp, "wb") as fh:
                np.savez(fh, canvas=canvas[np.ix_(rows, cols)], wsum=wsum[np.ix_(rows, cols)],
                         key=np.array(f"{self.key}:{stats_key}"))
                fh.flush()
                os.fsync(fh.fileno())
            tmp.replace(path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"--work-dir: could not save a tile in {str(self.folder.path)!r} "
                              f"({e.strerror or e}); free some disk space or give another --work-dir") from None

    def restore_tiles(self, level: int, pass_index: int, tiles: list[Tile], stats_key: str,
                      canvas: np.ndarray, wsum: np.ndarray) -> list[int]:
        """Put the saved tiles of this pass back into ``canvas`` and ``wsum``, in order; returns
        their indices.  Tiles are refined in order, so the saved ones are the first k; any saved
        for other statistics, or after a gap, are deleted and refined again."""
        if self.folder is None or self._state_key() != self.key:
            return []
        done = []
        for tile in tiles:
            path = self._tile_path(level, pass_index, tile.index)
            try:
                with np.load(path) as z:
                    if str(z["key"]) != f"{self.key}:{stats_key}":
                        break
                    rows, cols = _blend_rows_cols(tile, canvas.shape)
                    canvas[np.ix_(rows, cols)] = z["canvas"]
                    wsum[np.ix_(rows, cols)] = z["wsum"]
            except (OSError, ValueError, KeyError):
                break
            done.append(tile.index)
        for p in self.folder.path.iterdir():  # the rest are refined again
            m = TILE_RE.match(p.name)
            if m and (int(m.group(1)), int(m.group(2))) == (level, pass_index) and int(m.group(3)) not in done:
                p.unlink(missing_ok=True)
        return done

    def _state_key(self) -> str | None:
        state = self._state()
        return state.get("key") if state else None

    def begin(self) -> None:
        """Mark the folder as this render's (tiles saved before any level is finished need it)."""
        if self.folder is not None and self._state_key() != self.key:
            self._write_state({"key": self.key, "level": None, "shape": None})

    def _write_state(self, state: dict) -> None:
        root = self.folder.path
        (root / "state.json.partial").write_text(json.dumps(state))
        (root / "state.json.partial").replace(root / "state.json")

    def remember_partial_output(self, path: Path | None) -> None:
        """Record the temporary output file about to be written (or None when it is gone), so a
        render killed while writing it removes it when run again: a file this render made."""
        if self.folder is None:
            return
        state = self._state() or {"key": self.key, "level": None, "shape": None}
        state["partial_output"] = str(path) if path is not None else None
        self._write_state(state)

    def partial_output(self) -> Path | None:
        state = self._state() if self.folder is not None else None
        if state and state.get("key") == self.key and state.get("partial_output"):
            return Path(state["partial_output"])
        return None

    def clear_tiles(self, level: int) -> None:
        if self.folder is None:
            return
        for p in self.folder.path.iterdir():
            m = TILE_RE.match(p.name)
            if m and int(m.group(1)) <= level:
                p.unlink(missing_ok=True)
