"""Process-wide settings a render asks for, in one place, made where a render (or its planner's
probe, or a cluster worker) starts, never as a side effect of importing hires or building an object:
numba's threading layer (``hires.kernels._config.prefer_workqueue``) and glibc's malloc giving large
freed blocks back promptly (``hires.canvas.return_memory_promptly``; glibc's own
``MALLOC_MMAP_THRESHOLD_`` in the environment wins).  A script that embeds hires and wants neither
can set ``NUMBA_THREADING_LAYER`` and ``MALLOC_MMAP_THRESHOLD_`` first.
"""
from __future__ import annotations


def tune_for_rendering() -> None:
    from hires.canvas import return_memory_promptly
    from hires.kernels._config import prefer_workqueue
    prefer_workqueue()
    return_memory_promptly()
