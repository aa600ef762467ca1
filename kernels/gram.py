"""Weighted Gram and mean accumulation in float64.

For features ``F`` of shape (N, C) and ownership weights ``w`` of shape (N,), adds
``sum_p w[p] F[p] F[p]^T`` to ``gram`` (C, C) and ``sum_p w[p] F[p]`` to ``mean`` (C,)
and ``sum_p w[p]`` to the returned count.  Pixels in tile overlaps carry weights that sum
to one across tiles, so the whole image is counted exactly once.
"""
import numba
import numpy as np

from hires.kernels._config import CACHE, FASTMATH, PARALLEL, n_threads, single_threaded_blas

# Positions per block: each block is cast to float64 and multiplied with BLAS (dgemm), so the
# accumulation is float64 throughout while the inner product runs at BLAS speed.  The block's two
# float64 copies stay in the core's L2 cache at about BLOCK_VALUES values each: a 864x864 tile's
# 64-channel Gram took 400 ms in blocks of 2048 positions, 200 ms in blocks of 256 (144 channels:
# 1.5 s -> 0.9 s at 128; benchmarks/kernels.py)
BLOCK_VALUES = 16384


def block_positions(channels: int) -> int:
    """Positions per block for features of ``channels`` channels (see BLOCK_VALUES)."""
    return int(min(2048, max(32, BLOCK_VALUES // max(channels, 1))))


@numba.njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _gram_kernel(feats, weights, gram_acc, mean_acc, count_acc, block):
    # feats (h, w, c), any strides (a box of a channels-last activation is read in place);
    # weights (h, w).  A block is a run of up to ``block`` positions of one row.
    h, w, c = feats.shape
    n_thr = gram_acc.shape[0]
    per_row = (w + block - 1) // block
    n_blocks = h * per_row
    for t in numba.prange(n_thr):
        # each thread owns gram_acc[t]: no two threads write the same memory
        f = np.empty((block, c), dtype=np.float64)
        fw = np.empty((block, c), dtype=np.float64)
        for b in range(t, n_blocks, n_thr):
            y = b // per_row
            lo = (b % per_row) * block
            m = min(w, lo + block) - lo
            k = 0  # the block's positions of nonzero weight, packed: the product costs their number
            for i in range(m):
                wi = np.float64(weights[y, lo + i])
                if wi == 0.0:
                    continue
                count_acc[t] += wi
                for j in range(c):
                    v = np.float64(feats[y, lo + i, j])
                    f[k, j] = v
                    fw[k, j] = v * wi
                    mean_acc[t, j] += v * wi
                k += 1
            if k > 0:
                gram_acc[t] += np.dot(fw[:k].T, f[:k])


@numba.njit(cache=CACHE)
def _reduce_kernel(gram_acc, mean_acc, count_acc, gram, mean):
    count = 0.0
    for t in range(gram_acc.shape[0]):
        gram += gram_acc[t]
        mean += mean_acc[t]
        count += count_acc[t]
    return count


def gram_accumulate(feats, weights, gram, mean):
    """Add the weighted Gram sum of ``feats`` into ``gram`` and ``mean``; return the weight sum.

    Parameters
    ----------
    feats : ndarray, float32 or float64, shape (N, C), or (h, w, C) with any strides
        Feature vectors, one row per position (a (h, w, C) box of an image's activations is read
        in place: each position's C values must be adjacent for speed, not the rows).
    weights : ndarray, shape (N,), or (h, w) for (h, w, C) features
        Ownership weight of each position, in [0, 1].
    gram : ndarray, float64, shape (C, C), C-contiguous
        Accumulator for ``sum w F F^T`` (updated in place).
    mean : ndarray, float64, shape (C,)
        Accumulator for ``sum w F`` (updated in place).
    """
    feats = np.asarray(feats)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    if feats.ndim == 2:
        feats = np.ascontiguousarray(feats)[None]
        if weights.ndim != 1 or weights.shape[0] != feats.shape[1]:
            raise ValueError(f"weights must have shape ({feats.shape[1]},), got {weights.shape}")
        weights = weights[None]
    elif feats.ndim != 3:
        raise ValueError(f"feats must be 2-D (N, C) or 3-D (h, w, C), got shape {feats.shape}")
    if feats.dtype not in (np.float32, np.float64):
        raise TypeError(f"feats must be float32 or float64, got {feats.dtype}; use .astype(np.float32)")
    h, w, c = feats.shape
    if weights.shape != (h, w):
        raise ValueError(f"weights must have shape {(h, w)}, got {weights.shape}")
    if gram.shape != (c, c) or gram.dtype != np.float64 or not gram.flags.c_contiguous:
        raise ValueError(f"gram must be a C-contiguous float64 ({c}, {c}) array")
    if mean.shape != (c,) or mean.dtype != np.float64:
        raise ValueError(f"mean must be a float64 ({c},) array")
    if h * w == 0:
        return 0.0
    block = block_positions(c)
    n_thr = min(n_threads(), h * ((w + block - 1) // block))
    gram_acc = np.zeros((n_thr, c, c), np.float64)
    mean_acc = np.zeros((n_thr, c), np.float64)
    count_acc = np.zeros(n_thr, np.float64)
    with single_threaded_blas():  # the kernel's threads each multiply their own blocks
        _gram_kernel(feats, weights, gram_acc, mean_acc, count_acc, block)
    return float(_reduce_kernel(gram_acc, mean_acc, count_acc, gram, mean))


@numba.njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _moments_kernel(feats, weights, sq, mean):
    # feats (C, h, w): each channel's plane is read along its rows by one thread, which alone
    # writes that channel's sums
    c, h, w = feats.shape
    for j in numba.prange(c):
        s1 = 0.0
        s2 = 0.0
        for y in range(h):
            for x in range(w):
                wi = np.float64(weights[y, x])
                v = np.float64(feats[j, y, x])
                s1 += v * wi
                s2 += v * v * wi
        mean[j] += s1
        sq[j] += s2


@numba.njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _moments_positions_kernel(feats, weights, sq_acc, mean_acc):
    # feats (h, w, C), each position's channels contiguous (a channels-last activation): thread t
    # reads rows t, t + n, ... along their positions into its own accumulators, reduced after
    h, w, c = feats.shape
    n = sq_acc.shape[0]
    for t in numba.prange(n):
        for y in range(t, h, n):
            for x in range(w):
                wi = np.float64(weights[y, x])
                for j in range(c):
                    v = np.float64(feats[y, x, j])
                    mean_acc[t, j] += v * wi
                    sq_acc[t, j] += v * v * wi


def moments_accumulate(feats, weights, sq, mean):
    """The Gram's diagonal only: add ``sum w F**2`` into ``sq`` and ``sum w F`` into ``mean``
    (float64, (C,)) for ``feats`` (C, h, w) of any strides (read channel by channel where each
    channel's rows are contiguous, as in a (1, C, H, W) activation, position by position where
    each position's channels are, as in a channels-last one) and ``weights`` (h, w); return the weight sum.
    C values per position, not C x C: what an instance norm's mean and variance need."""
    feats = np.asarray(feats)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    if feats.ndim != 3 or feats.dtype not in (np.float32, np.float64):
        raise ValueError(f"feats must be a float (C, h, w) array, got {feats.dtype} {feats.shape}")
    c, h, w = feats.shape
    if weights.shape != (h, w):
        raise ValueError(f"weights must have shape {(h, w)}, got {weights.shape}")
    for acc in (sq, mean):
        if acc.shape != (c,) or acc.dtype != np.float64 or not acc.flags.c_contiguous:
            raise ValueError(f"sq and mean must be C-contiguous float64 ({c},) arrays")
    if h * w and feats.strides[0] < min(feats.strides[1:]):  # channels vary fastest
        n = min(n_threads(), h)
        sq_acc, mean_acc = np.zeros((n, c)), np.zeros((n, c))
        _moments_positions_kernel(feats.transpose(1, 2, 0), weights, sq_acc, mean_acc)
        sq += sq_acc.sum(axis=0)
        mean += mean_acc.sum(axis=0)
    else:
        _moments_kernel(feats, weights, sq, mean)
    return float(weights.sum(dtype=np.float64))


def gram_finalize(gram, mean, count):
    """Return (G, mu) = (gram / count, mean / count)."""
    if count <= 0:
        raise ValueError("count must be positive: no pixels were accumulated")
    return gram / count, mean / count
