"""The multicolour schedule of a level's tiles: groups of tiles that never read or write each
other's pixels, so the tiles of one group can be refined at the same time (on a cluster) and give
what refining them one after another would.

A tile reads its region (blend area plus context) and writes its blend area.  Two tiles conflict
when either one's region meets the other's blend area; on a seamless canvas the coordinates wrap.
Colours run in order and every tile reads the results of the earlier colours, so every cut
between tiles still has an earlier and a later side, as in a sequential pass (Gauss-Seidel),
never two sides refined from one snapshot (Jacobi, which blurs the cuts).

Greedy colouring in row-major order gives the four colours (row mod 2, column mod 2) of an
ordinary grid, and more where that would conflict: a wrapped axis with an odd tile count (the
last tile touches the first), or tiles smaller than their context, whose regions reach past the
next tile.
"""
from __future__ import annotations

from hires.engine.tiles import Tile


def _meet(a: tuple[int, int], b: tuple[int, int], period: int | None) -> bool:
    """Half-open intervals ``a`` and ``b`` intersect (on a circle of ``period`` when given)."""
    shifts = (0,) if period is None else range(-2 * period, 3 * period, period)
    return any(a[0] < b[1] + k and b[0] + k < a[1] for k in shifts)


def _reads_writes(reader: Tile, writer: Tile, width: int, height: int) -> bool:
    wrap = reader.wrap or writer.wrap
    ry0, ry1, rx0, rx1 = reader.region
    by0, by1, bx0, bx1 = writer.blend
    return (_meet((ry0, ry1), (by0, by1), height if wrap else None)
            and _meet((rx0, rx1), (bx0, bx1), width if wrap else None))


def conflict(a: Tile, b: Tile, width: int, height: int) -> bool:
    """Refining ``a`` and ``b`` at the same time would differ from refining them in turn."""
    return _reads_writes(a, b, width, height) or _reads_writes(b, a, width, height)


def colour_groups(tiles: list[Tile], width: int, height: int) -> list[list[Tile]]:
    """The tiles in groups without conflicts, in the order they run (greedy, row-major)."""
    colours: list[list[Tile]] = []
    for t in tiles:
        for group in colours:
            if not any(conflict(t, u, width, height) for u in group):
                group.append(t)
                break
        else:
            colours.append([t])
    check_colours(colours, width, height)
    return colours


def check_colours(colours: list[list[Tile]], width: int, height: int) -> None:
    """Raise if two tiles of one group conflict (checked before every level runs)."""
    for group in colours:
        for i, a in enumerate(group):
            for b in group[i + 1:]:
                if conflict(a, b, width, height):
                    raise RuntimeError(f"tiles {a.index} and {b.index} share pixels but were put in one colour")

