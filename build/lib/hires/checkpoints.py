"""The work folder of a render: resume checkpoints and disk-backed buffers, and nothing else.

hires deletes only what it created.  Its state lives in a folder of its own, marked by a file
hires writes when it makes the folder; a folder without that mark is never used or removed.
Inside it, files are removed by the names hires gave them, and the folder itself only when
nothing else is left in it.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from hires.canvas import path_of
from hires.errors import OutputError

MARKER = "HIRES-WORK-FOLDER"
LEVEL_RE = re.compile(r"^level\d+\.f32$")


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
        try:
            path.mkdir(parents=True)
            (path / MARKER).write_text("made by hires for one render's checkpoints and scratch buffers; "
                                       "hires removes it after the render succeeds\n")
        except OSError as e:
            raise OutputError(f"--work-dir: cannot create {str(path)!r} ({e.strerror or e}); "
                              "give a writable --work-dir") from None
        return cls(path)

    def remove(self) -> None:
        """Delete hires' own files, then the folder if nothing else is in it."""
        for p in self.path.iterdir():
            if p.is_file() and (LEVEL_RE.match(p.name) or p.name in ("state.json", MARKER)
                                or p.name.endswith(".partial")):
                p.unlink(missing_ok=True)
        try:
            self.path.rmdir()
        except OSError:  # the user put something in it: leave it, with their files
            pass


class Checkpoints:
    """Finished levels saved in a work folder, so a crashed render resumes where it stopped.

    A level is stored as raw float32 (copied file to file when the canvas is disk-backed, so a
    checkpoint never pulls a whole canvas into memory).  ``state.json`` names the level, its
    shape and the key of the render's inputs and settings: another render's state is ignored."""

    def __init__(self, folder: WorkFolder | None, key: str):
        self.folder, self.key = folder, key

    def _state(self) -> dict | None:
        try:
            state = json.loads((self.folder.path / "state.json").read_text())
            return state if isinstance(state, dict) else None
        except (OSError, ValueError):
            return None

    def latest(self) -> tuple[int, np.ndarray] | None:
        """(level, read-only float32 memmap) of the last finished level of this render, if any."""
        state = self._state() if self.folder is not None else None
        if state is None or state.get("key") != self.key:
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
        state = {"key": self.key, "level": level, "shape": list(canvas.shape)}
        (root / "state.json.partial").write_text(json.dumps(state))
        (root / "state.json.partial").replace(root / "state.json")
        if previous and previous.get("level") != level:  # the checkpoint this one replaces
            (root / f"level{int(previous.get('level', -1))}.f32").unlink(missing_ok=True)
