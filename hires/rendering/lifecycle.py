"""The lifecycle every render shares, whatever its method: the work folder and its lock, the
resume state, the temporary output a killed run left, and what is removed when it ends.

hires deletes only what it made: files inside its own marked work folder (``checkpoints``), and
a temporary output it created: of the exact pattern ``output.partial_path`` makes beside the
output, and still the very file (device and inode) the state recorded when it was created.  The
work state is written by an earlier run and may have been edited: a recorded temporary output
that fails either test is ignored with a warning, never deleted.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

from hires.engine.checkpoints import Checkpoints
from hires.engine.workfolder import WorkFolder, work_folder_path
from hires.core.output import is_partial_of
from hires.core.progress import Note


def check_work_folder(output: Path | None, work_dir: str | None) -> None:
    """Refuse, before any work, a work folder hires would not use (a link at its name, another
    user's folder, a folder hires did not make); one that is not there yet is made later."""
    folder = work_folder_path(output, work_dir)
    if folder is not None and os.path.lexists(folder):
        WorkFolder.open(folder).close()


@contextmanager
def session(output: Path | None, work_dir: str | None, key: str, progress, *, fresh: bool = False,
            keep_work: bool = False):
    """Open (or make) the render's work folder, lock it, forget state that is not this render's
    (all of it with ``fresh``) and remove the temporary output a killed run of this render left;
    yield the render's Checkpoints (their ``folder`` None when there is no work folder).  At the
    end the lock is released and the folder removed when the render succeeded (unless
    ``keep_work``) or failed with nothing saved to resume from."""
    folder = work_folder_path(output, work_dir)
    work = WorkFolder.open(folder) if folder is not None else None
    if work is not None:
        work.lock()
    checkpoints = Checkpoints(work, key)
    succeeded = False
    try:
        if work is not None:
            _start(checkpoints, output, fresh, progress)
        yield checkpoints
        succeeded = True
    finally:
        if work is not None:
            work.unlock()
            if (succeeded and not keep_work) or (not succeeded and not checkpoints.resumable()):
                work.remove()
            else:
                work.close()


def _start(checkpoints: Checkpoints, output: Path | None, fresh: bool, progress) -> None:
    if fresh:
        checkpoints.clear()
    elif checkpoints.stale():
        progress(Note("the work folder holds an interrupted render with other inputs or settings: starting fresh"))
        checkpoints.clear()
    partial = checkpoints.partial_output()
    if partial is not None and os.path.lexists(partial.path):
        if output is not None and is_partial_of(partial.path, output) and partial.is_still():
            partial.path.unlink(missing_ok=True)
        else:  # not a file hires made for this output: someone else's, left alone
            progress(Note(f"warning: the work folder's state names {str(partial.path)!r} as a temporary output, "
                          "which is not a file hires made beside this output; it was left as it is"))
    if partial is not None:
        checkpoints.remember_partial_output(None)
    checkpoints.begin()
