"""The one place where numba compilation flags are set."""
import os

import numba

# fastmath would let LLVM reassociate the float64 sums; the Gram is an accumulation over
# millions of pixels, so keep IEEE semantics and take the speed from BLAS instead.
FASTMATH = False
PARALLEL = True
CACHE = os.environ.get("HIRES_NUMBA_CACHE", "1") == "1"

# The Gram kernel calls BLAS from numba's worker threads.  Under the OpenMP layer OpenBLAS
# detects the parallel region and warns that it may hang; the workqueue layer has no OpenMP.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"


def n_threads() -> int:
    return max(1, numba.get_num_threads())
