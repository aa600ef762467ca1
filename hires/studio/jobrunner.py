"""The studio's queue: one job renders at a time, each in a process of its own
(``python -m hires.studio.servework``), its JSON progress lines read into the job's record and pushed to
whoever listens (the page's event stream).  A job the server did not see end (the server stopped or
was killed) is queued again when the server starts, and its render resumes from its work folder.
"""
from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from hires.studio.studio import ENDED, SNAPSHOTS, JobRecord, Studio

PROGRESS_EVERY_S = 0.5   # iteration events are many: the record takes one this often


class Runner:
    """The queue of jobs and the one that renders now; ``listen`` gives a queue of updates."""

    def __init__(self, studio: Studio):
        self.studio = studio
        self.records: dict[str, JobRecord] = {}
        self.listeners: set[asyncio.Queue] = set()
        self.wake = asyncio.Event()
        self.current: tuple[str, asyncio.subprocess.Process] | None = None
        self.cancelling: set[str] = set()

    def restore(self) -> None:
        """The records of earlier runs; a job that was queued or running is queued again."""
        for record in self.studio.records():
            if record.status not in ENDED:
                record.status = "queued"
                self.studio.save(record)
            self.records[record.id] = record
        self.wake.set()

    def add(self, record: JobRecord) -> None:
        self.records[record.id] = record
        self.studio.save(record)
        self._publish(record)
        self.wake.set()

    def listen(self) -> asyncio.Queue:
        q: asyncio.Queue = asyncio.Queue(maxsize=256)
        self.listeners.add(q)
        return q

    def unlisten(self, q: asyncio.Queue) -> None:
        self.listeners.discard(q)

    def _publish(self, record: JobRecord) -> None:
        update = record.as_dict()
        for q in list(self.listeners):
            if q.full():   # a listener that does not read loses its oldest news, never blocks the queue
                q.get_nowait()
            q.put_nowait(update)

    def rendering_bytes(self) -> int:
        """The memory budget of the render that runs now (0 when none does)."""
        if self.current is None:
            return 0
        from hires.core.config import parse_memory
        return parse_memory(self.records[self.current[0]].table["memory"])

    def cancel(self, job_id: str) -> JobRecord:
        """Stop a queued or running job (a running render is interrupted: SIGINT, as Ctrl-C)."""
        record = self.records[job_id]
        if record.status == "queued":
            record.status = "cancelled"
            self.studio.save(record)
            self._publish(record)
        elif record.status == "running" and self.current and self.current[0] == job_id:
            self.cancelling.add(job_id)
            self.current[1].send_signal(signal.SIGINT)
        return record

    def remove(self, job_id: str) -> None:
        self.studio.remove(job_id)
        self.records.pop(job_id, None)

    async def run_forever(self) -> None:
        while True:
            queued = [r for r in self.records.values() if r.status == "queued"]
            if not queued:
                self.wake.clear()
                await self.wake.wait()
                continue
            await self._run(min(queued, key=lambda r: r.created))

    async def _run(self, record: JobRecord) -> None:
        folder = self.studio.job_dir(record.id)
        record.status, record.message = "running", None
        self.studio.save(record)
        self._publish(record)
        t0 = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "hires.studio.servework", str(folder), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self.current = (record.id, proc)
        try:
            last_line = await self._follow(record, proc, folder)
            out = await proc.stdout.read()
            code = await proc.wait()
        finally:
            self.current = None
        self._finish(record, out, code, last_line, time.perf_counter() - t0)

    async def _follow(self, record: JobRecord, proc, folder: Path) -> str:
        """Read the render's progress lines into the record until it ends; its last other line."""
        last_line, last_saved = "", 0.0
        while True:
            raw = await proc.stderr.readline()
            if not raw:
                return last_line
            try:
                event = json.loads(raw)
                kind = event.get("event")
            except (ValueError, AttributeError):
                last_line = raw.decode(errors="replace").strip() or last_line
                continue
            if not _update(record, event, kind, folder):
                continue
            now = time.perf_counter()
            if kind != "iteration" or now - last_saved >= PROGRESS_EVERY_S:
                last_saved = now
                self._publish(record)

    def _finish(self, record: JobRecord, out: bytes, code: int, last_line: str, wall_s: float) -> None:
        try:
            msg = json.loads(out.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            msg = None
        record.wall_s = round(wall_s, 2)
        if record.id in self.cancelling:
            self.cancelling.discard(record.id)
            record.status, record.message = "cancelled", "cancelled"
        elif msg and msg.get("status") == "done":
            record.status, record.output = "done", Path(msg["output"]).name
        else:
            record.status = "failed"
            record.message = (msg or {}).get("error") or last_line or f"the render process ended with exit code {code}"
        if record.status == "done":
            record.progress["eta_s"] = 0.0
        self.studio.save(record)
        self._publish(record)


def _update(record: JobRecord, event: dict, kind: str, folder: Path) -> bool:
    """Take one progress event into the record; False when it changes nothing shown."""
    p = record.progress
    if kind == "level_start":
        p.update(level=event["level"], n_levels=event["n_levels"], width=event["width"], height=event["height"],
                 n_tiles=event["n_tiles"], tile=0, tiles_done=0)
    elif kind == "iteration":
        p.update(tile=event["tile"], n_tiles=event["n_tiles"], iteration=event["iteration"],
                 iterations=event["iterations"], done=round(event["work_done"] / max(event["work_total"], 1e-9), 4))
    elif kind == "tile_end":   # (tiles finish in colour order: count them, their numbers jump)
        p["tiles_done"] = p.get("tiles_done", 0) + 1
    elif kind == "snapshot":
        path = Path(event["path"])
        if path.parent.resolve() != (folder / SNAPSHOTS).resolve():
            return False
        record.snapshot = path.name
        p.update(snapshot_level=event["level"])
    elif kind == "note":
        p["note"] = event["text"]
    elif kind == "write":
        p["writing"] = True
    else:
        return False
    p["elapsed_s"], p["eta_s"] = event.get("elapsed_s"), event.get("eta_s")
    return True
