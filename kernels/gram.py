"""Weighted Gram and mean accumulation in float64.

For features ``F`` of shape (N, C) and ownership weights ``w`` of shape (N,), adds
``sum_p w[p] F[p] F[p]^T`` to ``gram`` (C, C) and ``sum_p w[p] F[p]`` to ``mean`` (C,)
and ``sum_p w[p]`` to the returned count.  Pixels in tile overlaps carry weights that sum
to one across tiles, so the whole image is counted exactly once.
"""
import numba
import numpy as np

from hires.kernels._config import CACHE, FASTMATH, PARALLEL, n_threads, single_threaded_blas

# Rows per block: each block is cast to float64 and multiplied with BLAS (dgemm), so the
# accumulation is float64 throughout while the inner product runs at BLAS speed.
BLOCK = 2048


@numba.njit(parallel=PARALLEL, fastmath=FASTMATH, cache=CACHE)
def _gram_kernel(feats, weights, gram_acc, mean_acc, count_acc, block):
    n, c = feats.shape
    n_thr = gram_acc.shape[0]
    n_blocks = (n + block - 1) // block
    for t in numba.prange(n_thr):
        # each thread owns gram_acc[t]: no two threads write the same memory
        for b in range(t, n_blocks, n_thr):
            lo = b * block
            hi = min(n, lo + block)
            m = hi - lo
            f = np.empty((m, c), dtype=np.float64)
            fw = np.empty((m, c), dtype=np.float64)
            for i in range(m):
                wi = np.float64(weights[lo + i])
                count_acc[t] += wi
                for j in range(c):
                    v = np.float64(feats[lo + i, j])
                    f[i, j] = v
                    fw[i, j] = v * wi
                    mean_acc[t, j] += v * wi
            gram_acc[t] += np.dot(fw.T, f)


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
    feats : ndarray, float32 or float64, shape (N, C)
        Feature vectors, one row per position.
    weights : ndarray, shape (N,)
        Ownership weight of each position, in [0, 1].
    gram : ndarray, float64, shape (C, C), C-contiguous
        Accumulator for ``sum w F F^T`` (updated in place).
    mean : ndarray, float64, shape (C,)
        Accumulator for ``sum w F`` (updated in place).
    """
    feats = np.ascontiguousarray(feats)
    weights = np.ascontiguousarray(weights, dtype=np.float32)
    if feats.ndim != 2:
        raise ValueError(f"feats must be 2-D (N, C), got shape {feats.shape}")
    if feats.dtype not in (np.float32, np.float64):
        raise TypeError(f"feats must be float32 or float64, got {feats.dtype}; use .astype(np.float32)")
    n, c = feats.shape
    if weights.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {weights.shape}")
    if gram.shape != (c, c) or gram.dtype != np.float64 or not gram.flags.c_contiguous:
        raise ValueError(f"gram must be a C-contiguous float64 ({c}, {c}) array")
    if mean.shape != (c,) or mean.dtype != np.float64:
        raise ValueError(f"mean must be a float64 ({c},) array")
    if n == 0:
        return 0.0
    n_thr = min(n_threads(), (n + BLOCK - 1) // BLOCK)
    gram_acc = np.zeros((n_thr, c, c), np.float64)
    mean_acc = np.zeros((n_thr, c), np.float64)
    count_acc = np.zeros(n_thr, np.float64)
    with single_threaded_blas():  # the kernel's threads each multiply their own blocks
        _gram_kernel(feats, weights, gram_acc, mean_acc, count_acc, BLOCK)
    return float(_reduce_kernel(gram_acc, mean_acc, count_acc, gram, mean))


def gram_finalize(gram, mean, count):
    """Return (G, mu) = (gram / count, mean / count)."""
    if count <= 0:
        raise ValueError("count must be positive: no pixels were accumulated")
    return gram / count, mean / count
