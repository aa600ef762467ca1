"""The work folder of a render or a fit: made and marked by hires, locked while in use, emptied only
of what hires put there.

hires deletes only what it created.  Its state lives in a folder of its own, marked by a file
hires writes when it makes the folder; a folder without that mark is never used or removed.
Inside it, files are removed by the names hires gave them, and the folder itself only when
nothing else is left in it.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from hires.core.errors import OutputError
from hires.core.safefiles import Folder


MARKER = "HIRES-WORK-FOLDER"
LOCK = "lock"
LEVEL_RE = re.compile(r"^level\d+\.f32$")
TILE_RE = re.compile(r"^tile-L(\d+)-P(\d+)-T(\d+)\.npz$")
PARTIAL_RE = re.compile(r"\.partial(-[0-9a-f]+)?$")  # a temporary file of Folder.replacing (or of older hires)
STATE = "state.json"
FIT_STATE = "fit-state.npz"  # a style fit's (hires.fit.fitjob)


def work_folder_path(output: Path | None, work_dir: str | None) -> Path | None:
    """Where a render keeps its state: ``.NAME.hires-work`` beside the output, or a subfolder
    ``NAME.hires-work`` of ``--work-dir`` (never the user's folder itself)."""
    stem = output.stem if output is not None else "render"
    if work_dir:
        return Path(work_dir) / f"{stem}.hires-work"
    return output.parent / f".{stem}.hires-work" if output is not None else None



class WorkFolder:
    """A folder hires made (it holds the marker file), held open by a descriptor; see the module
    docstring.  It must be a real folder of this user: a link standing at its name, or a folder
    of another user, is refused, and every file hires writes or removes in it goes through
    ``hires.core.safefiles.Folder`` (never through a link planted at one of its names)."""

    def __init__(self, folder: Folder):
        self.dir = folder
        self.path = folder.path

    @classmethod
    def open(cls, path: Path) -> "WorkFolder":
        path = Path(path)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return cls._make(path)
        except OSError as e:
            raise OutputError(f"--work-dir: cannot look at {str(path)!r} ({e.strerror or e})") from None
        if stat.S_ISLNK(st.st_mode):
            raise OutputError(f"--work-dir: {str(path)!r} is a symbolic link; hires keeps its state only in a real "
                              "folder it made: remove the link, or give another --work-dir")
        try:
            folder = Folder.open(path)
        except PermissionError as e:
            raise OutputError(f"--work-dir: {str(path)!r} is not this user's folder ({e}); hires uses only a "
                              "folder it made for you: give another --work-dir") from None
        except OSError:
            raise OutputError(f"--work-dir: {str(path)!r} exists and is not a folder hires made; move it or "
                              "give another --work-dir") from None
        if not folder.is_regular(MARKER):
            folder.close()
            raise OutputError(f"--work-dir: {str(path)!r} exists and was not made by hires; "
                              "move it or give another --work-dir")
        return cls(folder)

    @classmethod
    def _make(cls, path: Path) -> "WorkFolder":
        if not path.parent.is_dir():  # hires makes its own folder only, never the folders above it
            raise OutputError(f"--work-dir: {str(path.parent)!r} does not exist; create it first or give another "
                              "--work-dir")
        try:
            path.mkdir()
            folder = Folder.open(path)
            with folder.create(MARKER) as fh:
                fh.write(b"made by hires for one render's checkpoints and scratch buffers; "
                         b"hires removes it after the render succeeds\n")
        except OSError as e:
            raise OutputError(f"--work-dir: cannot create {str(path)!r} ({e.strerror or e}); "
                              "give a writable --work-dir") from None
        return cls(folder)

    def close(self) -> None:
        self.dir.close()

    def lock(self) -> None:
        """Claim the folder for this process: a second render into the same output would mix
        its checkpoints with ours.  A lock left by a process that no longer runs is taken over."""
        try:
            pid = int(self.dir.read(LOCK, 64).decode().strip())
        except (OSError, ValueError):
            pid = None
        if pid is not None and pid != os.getpid() and _alive(pid):
            raise OutputError(f"another hires (pid {pid}) is rendering into this output (work folder "
                              f"{str(self.path)!r}); wait for it, or write to another file")
        self.dir.write_text(LOCK, f"{os.getpid()}\n")

    def unlock(self) -> None:
        try:
            if int(self.dir.read(LOCK, 64).decode().strip()) == os.getpid():
                self.dir.unlink(LOCK)
        except (OSError, ValueError):
            pass

    def remove(self) -> None:
        """Delete hires' own names (a link at one of them goes as a name, what it points to
        stays), then the folder if nothing else is in it; the descriptor is closed."""
        for name in self.dir.names():
            if is_checkpoint(name) or name in (MARKER, LOCK) or PARTIAL_RE.search(name):
                self.dir.unlink(name)
        self.dir.rmdir_self()  # (not when the user put something in it: left, with their files)
        self.close()



@dataclass(frozen=True)
class MadeFile:
    """A file hires created, as its state records it: the path, and the device and inode the file
    had when it was created (which a file planted later at that path does not have)."""
    path: Path
    dev: int | None
    ino: int | None

    def is_still(self) -> bool:
        """The path still names the very file that was created (a regular file, not a link)."""
        try:
            st = os.lstat(self.path)
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) == (self.dev, self.ino)



def is_checkpoint(name: str) -> bool:
    """A file of the resume state: a finished level, a finished tile, or the state record."""
    return bool(LEVEL_RE.match(name) or TILE_RE.match(name)) or name in (STATE, FIT_STATE)



def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
