"""Nearest-patch fields and patch votes: the two steps of texture optimisation (Kwatra et al. 2005).

A field gives, for each patch of a target image (its top-left corner), the top-left corner of a
patch of a source image (an atlas of examples); ``valid`` marks the source corners whose patch lies
inside one example.  With ``wrap`` the target is a torus: every position starts a patch and reads
modulo the target's size, so what is made tiles.  Distances are sums of squared differences over
the patch's pixels and channels, plus an occurrence penalty that keeps the field from reusing a few
source regions (Kaspar et al. 2015): ``penalty`` times how far the mean use of the source pixels
under a candidate patch exceeds their ``expected`` use.

The field is found by PatchMatch (Barnes et al. 2009): neighbours' matches shifted by one
(propagation, in scan order, reversed on odd sweeps) and random candidates around the current match
at halving radii.  Sequential and seeded: the same inputs give the same field.
"""
import numba
import numpy as np

from hires.kernels._config import CACHE, FASTMATH


@numba.njit(fastmath=FASTMATH, cache=CACHE)
def _ssd(target, source, ty, tx, sy, sx, p, wrap, limit):
    """Squared distance of the target's patch at (ty, tx) and the source's at (sy, sx), stopping
    once it passes ``limit``."""
    H, W, C = target.shape
    total = 0.0
    for dy in range(p):
        y = (ty + dy) % H if wrap else ty + dy
        for dx in range(p):
            x = (tx + dx) % W if wrap else tx + dx
            for c in range(C):
                d = np.float64(target[y, x, c]) - np.float64(source[sy + dy, sx + dx, c])
                total += d * d
        if total > limit:
            return total
    return total


@numba.njit(fastmath=FASTMATH, cache=CACHE)
def _use(uses, sy, sx, p):
    """Mean use of the source pixels under the patch at (sy, sx)."""
    total = 0.0
    for dy in range(p):
        for dx in range(p):
            total += uses[sy + dy, sx + dx]
    return total / (p * p)


@numba.njit(fastmath=FASTMATH, cache=CACHE)
def _mark(uses, sy, sx, p, amount):
    for dy in range(p):
        for dx in range(p):
            uses[sy + dy, sx + dx] += amount


@numba.njit(fastmath=FASTMATH, cache=CACHE)
def _cost(target, source, uses, expected, penalty, ty, tx, sy, sx, p, wrap, limit):
    extra = 0.0
    if penalty > 0.0:
        over = _use(uses, sy, sx, p) / expected[sy, sx] - 1.0
        if over > 0.0:
            extra = penalty * over
    if extra >= limit:
        return extra
    return _ssd(target, source, ty, tx, sy, sx, p, wrap, limit - extra) + extra


@numba.njit(fastmath=FASTMATH, cache=CACHE)
def _patchmatch_kernel(target, source, valid, field, cost, uses, expected, penalty, p, wrap, sweeps, seed):
    np.random.seed(seed)
    Hf, Wf = field.shape[:2]
    Hs, Ws = valid.shape
    radius0 = max(Hs, Ws)
    for ty in range(Hf):
        for tx in range(Wf):
            cost[ty, tx] = _cost(target, source, uses, expected, penalty, ty, tx, field[ty, tx, 0], field[ty, tx, 1],
                                 p, wrap, np.inf)
    for sweep in range(sweeps):
        step = 1 if sweep % 2 == 0 else -1
        for i in range(Hf):
            ty = i if step == 1 else Hf - 1 - i
            for j in range(Wf):
                tx = j if step == 1 else Wf - 1 - j
                by, bx, best = field[ty, tx, 0], field[ty, tx, 1], cost[ty, tx]
                # propagation: the neighbours before this one in scan order, their matches shifted
                for k in range(2):
                    oy, ox = (step, 0) if k == 0 else (0, step)
                    ny, nx = ty - oy, tx - ox
                    if wrap:
                        ny, nx = ny % Hf, nx % Wf
                    elif ny < 0 or ny >= Hf or nx < 0 or nx >= Wf:
                        continue
                    cy, cx = field[ny, nx, 0] + oy, field[ny, nx, 1] + ox
                    if 0 <= cy < Hs and 0 <= cx < Ws and valid[cy, cx] and (cy != by or cx != bx):
                        c = _cost(target, source, uses, expected, penalty, ty, tx, cy, cx, p, wrap, best)
                        if c < best:
                            by, bx, best = cy, cx, c
                # random search at halving radii around the best so far
                r = radius0
                while r >= 1:   # (a window around the best, cut to the source: no sample wasted outside)
                    cy = np.random.randint(max(0, by - r), min(Hs, by + r + 1))
                    cx = np.random.randint(max(0, bx - r), min(Ws, bx + r + 1))
                    if valid[cy, cx] and (cy != by or cx != bx):
                        c = _cost(target, source, uses, expected, penalty, ty, tx, cy, cx, p, wrap, best)
                        if c < best:
                            by, bx, best = cy, cx, c
                    r //= 2
                if by != field[ty, tx, 0] or bx != field[ty, tx, 1]:
                    if penalty > 0.0:
                        _mark(uses, field[ty, tx, 0], field[ty, tx, 1], p, -1.0)
                        _mark(uses, by, bx, p, 1.0)
                    field[ty, tx, 0], field[ty, tx, 1] = by, bx
                cost[ty, tx] = best


@numba.njit(fastmath=FASTMATH, cache=CACHE)
def _vote_kernel(source, field, cost, out, weights, p, wrap, power):
    H, W, C = out.shape
    Hf, Wf = field.shape[:2]
    for y in range(H):
        for x in range(W):
            weights[y, x] = 0.0
            for c in range(C):
                out[y, x, c] = 0.0
    for ty in range(Hf):
        for tx in range(Wf):
            sy, sx = field[ty, tx, 0], field[ty, tx, 1]
            w = (np.sqrt(max(cost[ty, tx], 0.0) / (p * p)) + 1e-3) ** power
            for dy in range(p):
                y = (ty + dy) % H if wrap else ty + dy
                for dx in range(p):
                    x = (tx + dx) % W if wrap else tx + dx
                    weights[y, x] += w
                    for c in range(C):
                        out[y, x, c] += w * source[sy + dy, sx + dx, c]
    for y in range(H):
        for x in range(W):
            for c in range(C):
                out[y, x, c] /= weights[y, x]


def _field_shape(target_shape, p: int, wrap: bool) -> tuple[int, int]:
    H, W = target_shape[:2]
    return (H, W) if wrap else (H - p + 1, W - p + 1)


def patch_uses(field: np.ndarray, source_shape, p: int) -> np.ndarray:
    """How many target patches cover each source pixel under ``field``."""
    H, W = source_shape[:2]
    corners = np.zeros((H + 1, W + 1), np.float64)   # patches starting at each corner, then summed
    np.add.at(corners, (field[..., 0].ravel() + 1, field[..., 1].ravel() + 1), 1.0)
    total = corners.cumsum(0).cumsum(1)
    ys, xs = np.arange(1, H + 1), np.arange(1, W + 1)
    y0, x0 = np.maximum(ys - p, 0), np.maximum(xs - p, 0)
    # a pixel is covered by the patches whose corner lies within p - 1 px above and left of it
    return total[ys][:, xs] - total[y0][:, xs] - total[ys][:, x0] + total[y0][:, x0]


def patchmatch(target: np.ndarray, source: np.ndarray, valid: np.ndarray, field: np.ndarray, p: int, wrap: bool,
               sweeps: int = 2, seed: int = 0, penalty: float = 0.0,
               expected: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Improve ``field`` ((Hf, Wf, 2) int64 source corners, in place) for ``target`` (H, W, C) against
    ``source`` (Hs, Ws, C): ``sweeps`` PatchMatch sweeps.  Returns the field and each target
    patch's cost (its squared distance plus the occurrence penalty).  ``expected``: each source
    corner's expected use (the occurrence penalty's reference; needed when ``penalty`` > 0)."""
    target = np.ascontiguousarray(target, np.float32)
    source = np.ascontiguousarray(source, np.float32)
    if target.ndim != 3 or source.ndim != 3 or target.shape[2] != source.shape[2]:
        raise ValueError(f"target {target.shape} and source {source.shape} must be (H, W, C) alike")
    if field.shape != (*_field_shape(target.shape, p, wrap), 2) or field.dtype != np.int64:
        raise ValueError(f"field {field.shape} {field.dtype} does not fit a target {target.shape[:2]} of {p} px patches")
    valid = np.ascontiguousarray(valid, np.bool_)
    if valid.shape != source.shape[:2] or not valid[field[..., 0], field[..., 1]].all():
        raise ValueError("valid must be the source's (Hs, Ws) and hold every corner of the field")
    uses = patch_uses(field, source.shape, p) if penalty > 0 else np.zeros(source.shape[:2])
    if expected is None:
        expected = np.ones(source.shape[:2])
    cost = np.empty(field.shape[:2], np.float64)
    _patchmatch_kernel(target, source, valid, field, cost, uses, np.ascontiguousarray(expected, np.float64),
                       float(penalty), p, wrap, sweeps, seed)
    return field, cost


def vote(source: np.ndarray, field: np.ndarray, cost: np.ndarray, shape: tuple[int, int], p: int, wrap: bool,
         power: float = -1.2) -> np.ndarray:
    """The target image of ``shape`` (H, W) that the field's patches make: each pixel the mean of
    the source pixels of every patch over it, a patch weighted by its RMS distance to the power
    ``power`` (-1.2: Kwatra et al.'s robust vote, close patches count more)."""
    source = np.ascontiguousarray(source, np.float32)
    if field.shape != (*_field_shape(shape, p, wrap), 2) or cost.shape != field.shape[:2]:
        raise ValueError(f"field {field.shape} and cost {cost.shape} do not fit a target {shape} of {p} px patches")
    out = np.empty((*shape, source.shape[2]), np.float32)
    weights = np.empty(shape, np.float64)
    _vote_kernel(source, field, np.ascontiguousarray(cost, np.float64), out, weights, p, wrap, float(power))
    return out
