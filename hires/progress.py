"""Typed progress events.  The core calls a callback with these; the CLI renders them (a rich bar,
or one JSON object per line for scripts with ``--json-progress``).

Each event class names itself in ``kind``: the ``event`` field of its JSON line.
"""
from __future__ import annotations

import dataclasses
import json
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
