"""Typed progress events, and their renderers.  The core calls a callback with these; the CLI and
batch render them (a rich bar, or one JSON object per line for scripts with ``--json-progress``).

Each event class names itself in ``kind``: the ``event`` field of its JSON line.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class PlanReady:
    """The plan of memory and time, before any work (``Plan.as_dict()`` or ``FastPlan.as_dict()``)."""
    plan: dict
    kind: ClassVar[str] = "plan"


@dataclass(frozen=True)
class LevelStarted:
    level: int
    n_levels: int
    width: int
    height: int
    n_tiles: int
    iterations: int
    layers: tuple[str, ...]
    kind: ClassVar[str] = "level_start"


@dataclass(frozen=True)
class TileStarted:
    level: int
    pass_index: int
    tile: int       # 1-based
    n_tiles: int
    kind: ClassVar[str] = "tile_start"


@dataclass(frozen=True)
class TileFinished:
    """A tile is refined, blended and (with a work folder) saved: it is never refined again."""
    level: int
    pass_index: int
    tile: int
    n_tiles: int
    kind: ClassVar[str] = "tile_end"


@dataclass(frozen=True)
class TilesRestored:
    """Tiles of an interrupted pass put back from the work folder instead of refined again."""
    level: int
    pass_index: int
    tiles: tuple[int, ...]
    kind: ClassVar[str] = "tiles_restored"


@dataclass(frozen=True)
class Step:
    """One optimiser iteration on one tile.  ``work_done/work_total`` drives the overall ETA."""
    level: int
    n_levels: int
    tile: int
    n_tiles: int
    iteration: int
    iterations: int
    loss: float
    work_done: float
    work_total: float
    kind: ClassVar[str] = "iteration"


@dataclass(frozen=True)
class Snapshot:
    """A downscaled preview was written (``--snapshots``)."""
    path: str
    level: int
    tile: int       # tiles of the level finished so far (0 after a fast level)
    kind: ClassVar[str] = "snapshot"


@dataclass(frozen=True)
class Writing:
    """The final output is being written."""
    path: str
    kind: ClassVar[str] = "write"


@dataclass(frozen=True)
class Done:
    output: str | None
    wall_s: float
    kind: ClassVar[str] = "done"


@dataclass(frozen=True)
class Failed:
    """The render stopped with this one-line message."""
    message: str
    kind: ClassVar[str] = "error"


@dataclass(frozen=True)
class Note:
    """A one-line message for the user (which network, resumed from a checkpoint, ...)."""
    text: str
    kind: ClassVar[str] = "note"


def ignore(event) -> None:
    """The default callback: drop events."""


class JsonLines:
    """A progress callback writing one JSON object per event to ``stream``, each with ``event``,
    ``elapsed_s`` and ``eta_s`` (from the work done since this object was made; null until known)."""

    def __init__(self, stream):
        self.stream = stream
        self.t0 = time.perf_counter()
        self.first: tuple[float, float] | None = None   # (time, work done) at the first iteration
        self.eta: float | None = None

    def __call__(self, event) -> None:
        now = time.perf_counter()
        if isinstance(event, Step):
            if self.first is None:
                self.first = (now, event.work_done)
            elif event.work_done > self.first[1]:
                rate = (event.work_done - self.first[1]) / (now - self.first[0])
                self.eta = max(0.0, (event.work_total - event.work_done) / rate)
        if isinstance(event, Done):
            self.eta = 0.0
        line = {"event": event.kind, "elapsed_s": round(now - self.t0, 3),
                "eta_s": None if self.eta is None else round(self.eta, 1), **dataclasses.asdict(event)}
        self.stream.write(json.dumps(line, default=str) + "\n")
        self.stream.flush()


# ---------------------------------------------------------------- renderers (the CLI's and batch's)

class RichProgress:
    """Renders core progress events: one overall bar with ETA, plus the level/tile/iteration."""

    def __init__(self, console, quiet: bool):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
        self.console, self.quiet = console, quiet
        self.bar = None if quiet else Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console, transient=False)
        self.task = None
        self.level = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.task is not None:
            self.bar.stop()

    def __call__(self, event) -> None:
        if isinstance(event, Note):
            if not self.quiet:
                self.console.print(event.text)
        elif isinstance(event, LevelStarted):
            self.level = f"level {event.level + 1}/{event.n_levels} {event.width}x{event.height}"
            if not self.quiet:
                self.console.print(f"{self.level}: {event.n_tiles} tile(s), {event.iterations} iterations, "
                                   f"layers {', '.join(event.layers)}")
        elif isinstance(event, Step) and self.bar:
            if self.task is None:  # start on the first step, so early errors print no bar
                self.bar.start()
                self.task = self.bar.add_task("", total=event.work_total)
            where = f"{self.level} tile {event.tile}/{event.n_tiles} " if self.level else ""  # (a style fit has no levels)
            self.bar.update(self.task, total=event.work_total, completed=min(event.work_done, event.work_total),
                            description=f"{where}it {event.iteration}/{event.iterations} loss {event.loss:.4g}")


class SilentProgress:
    """--quiet: nothing but errors (which main prints)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def __call__(self, event) -> None:
        pass


class JsonProgress(SilentProgress):
    def __init__(self):
        self.lines = JsonLines(sys.stderr)
        self.failed = False

    def __call__(self, event) -> None:
        self.failed = self.failed or isinstance(event, Failed)
        self.lines(event)


def make_progress(kind: str, console):
    """The progress callback (a context manager) for ``kind``: rich, quiet or json."""
    if kind == "json":
        return JsonProgress()
    if kind == "quiet":
        return SilentProgress()
    return RichProgress(console, False)
