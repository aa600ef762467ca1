"""One studio job, run in a process of its own (``python -m hires.studio.servework JOB_FOLDER``): its table
(``job.json``, made by ``hires.studio.studio``) read as a batch file's job is, rendered with progress as JSON
lines on stderr (``hires.core.progress.JsonLines``, the snapshots' events among them), and the outcome as one
JSON object on stdout.  A crash or a kill here ends this process, never the server.  Run again on an
interrupted job, the render resumes from its work folder.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path


def _stop_with_the_server(server: int) -> None:
    """A server killed outright cannot stop its render: when this process's parent changes, it
    interrupts itself (as Ctrl-C: the work folder keeps what was done), so that the restarted server's
    render of the same job resumes from there instead of meeting a second renderer."""
    def watch():
        while os.getppid() == server:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGINT)
    threading.Thread(target=watch, daemon=True, name="hires server watch").start()


def main(argv=None) -> int:
    from hires.core import process
    process.huge_pages_for_torch()
    process.tune_for_rendering()
    from hires.rendering.batch import job_from_table, run_here
    from hires.core.errors import HiresError
    from hires.studio.studio import RECORD, check_table
    _stop_with_the_server(os.getppid())
    folder = Path(os.path.abspath((argv or sys.argv[1:])[0]))
    try:
        table = json.loads((folder / RECORD).read_text())["table"]
        check_table(table, folder, folder.parent.parent / "uploads")
        job = job_from_table(folder / RECORD, 1, table)
    except (HiresError, OSError, ValueError, KeyError) as e:
        msg = {"status": "failed", "output": None, "error": str(e), "wall_s": 0.0, "peak_rss_bytes": None}
    else:
        try:
            msg = run_here(job, "json")
        except KeyboardInterrupt:  # the server's cancel: what was saved stays for a resume
            msg = {"status": "cancelled", "output": None, "error": "cancelled", "wall_s": 0.0,
                   "peak_rss_bytes": None}
    sys.stdout.write(json.dumps(msg) + "\n")
    return 0 if msg["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
