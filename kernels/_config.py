"""The one place where numba compilation flags, and the BLAS threads under numba's, are set."""
import contextlib
import ctypes
import functools
import os

import numba

# fastmath would let LLVM reassociate the float64 sums; the Gram is an accumulation over
# millions of pixels, so keep IEEE semantics and take the speed from BLAS instead.
FASTMATH = False
PARALLEL = True
CACHE = os.environ.get("HIRES_NUMBA_CACHE", "1") == "1"


def prefer_workqueue() -> None:
    """numba's threading layer for this process: workqueue, unless NUMBA_THREADING_LAYER says
    otherwise.  The Gram kernel calls BLAS from numba's worker threads; under the OpenMP layer
    OpenBLAS detects the parallel region and warns that it may hang, and the workqueue layer has no
    OpenMP.  Process-wide, so hires calls it where a render starts (``hires.core.process``), never on
    import; numba reads it at its first parallel launch, so later calls change nothing."""
    if "NUMBA_THREADING_LAYER" not in os.environ:
        numba.config.THREADING_LAYER = "workqueue"


def n_threads() -> int:
    return max(1, numba.get_num_threads())


# ---------------------------------------------------------------- BLAS threads inside numba threads

# (get, set) names of the thread-count functions in the OpenBLAS builds numpy and scipy ship, and in
# a plain OpenBLAS
_OPENBLAS_SYMBOLS = (("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
                     ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
                     ("openblas_get_num_threads", "openblas_set_num_threads"))


def _loaded_openblas() -> list[str]:
    """Paths of the OpenBLAS libraries loaded in this process (Linux: from /proc/self/maps), after
    loading the one numba's ``np.dot`` calls (scipy's, through scipy.linalg.cython_blas)."""
    import scipy.linalg.cython_blas  # noqa: F401
    try:
        with open("/proc/self/maps") as fh:
            paths = {line.split()[-1] for line in fh if "openblas" in line.lower() and "/" in line}
    except OSError:  # not Linux: the BLAS threads are left as they are
        return []
    return sorted(paths)


@functools.cache
def _openblas_controls() -> tuple:
    """(get, set) ctypes functions of each loaded OpenBLAS's thread count."""
    controls = []
    for path in _loaded_openblas():
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same library, not a second copy
        except OSError:
            continue
        for get, set_ in _OPENBLAS_SYMBOLS:
            if hasattr(lib, get) and hasattr(lib, set_):
                getter, setter = getattr(lib, get), getattr(lib, set_)
                getter.restype, setter.argtypes = ctypes.c_int, [ctypes.c_int]
                controls.append((getter, setter))
                break
    return tuple(controls)


def blas_threads() -> list[int]:
    """The thread count of each loaded OpenBLAS (empty where they cannot be read)."""
    return [get() for get, _ in _openblas_controls()]


@contextlib.contextmanager
def single_threaded_blas():
    """BLAS calls inside (numba's ``np.dot``, made from the kernels' own threads) run on one thread
    each; the counts are put back after.  OpenBLAS threads on top of numba's spin against them:
    a 1M x 64 Gram took 6.4 s with them and 0.2 s without, while a render used both cores."""
    controls = _openblas_controls()
    before = [get() for get, _ in controls]
    for _, set_ in controls:
        set_(1)
    try:
        yield
    finally:
        for (_, set_), n in zip(controls, before):
            set_(n)
