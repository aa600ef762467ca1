"""Typed progress events.  The core calls a callback with these; only the CLI renders them."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LevelStarted:
    level: int
    n_levels: int
    width: int
    height: int
    n_tiles: int
    iterations: int
    layers: tuple[str, ...]


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


@dataclass(frozen=True)
class Note:
    """A one-line message for the user (which network, resumed from a checkpoint, ...)."""
    text: str


def ignore(event) -> None:
    """The default callback: drop events."""
