"""Process-wide settings a render asks for, in one place, made where a render (or its planner's
probe, or a cluster worker) starts, never as a side effect of importing hires or building an object:
numba's threading layer (``hires.kernels._config.prefer_workqueue``) and glibc's malloc giving large
freed blocks back promptly (``hires.core.canvas.return_memory_promptly``; glibc's own
``MALLOC_MMAP_THRESHOLD_`` in the environment wins).  A script that embeds hires and wants neither
can set ``NUMBA_THREADING_LAYER`` and ``MALLOC_MMAP_THRESHOLD_`` first.

One of them has to be made before torch loads: ``huge_pages_for_torch``, which the ``hires`` command
and the first use of ``hires.render``/``hires.texture`` ask for (``THP_MEM_ALLOC_ENABLE=0`` declines).
"""
from __future__ import annotations

import os
import sys

# torch's CPU allocator backs its blocks of 2 MiB and more with transparent huge pages (2 MiB aligned,
# madvise(MADV_HUGEPAGE)) when this is 1; torch reads it once, when it loads
TORCH_THP = "THP_MEM_ALLOC_ENABLE"


def huge_pages_for_torch() -> None:
    """Ask torch's allocator for transparent huge pages, if torch is not loaded yet (a value the
    environment already has wins; huge_pages_in_use tells the outcome).  A render maps
    its large blocks afresh (glibc gives them back promptly, see tune_for_rendering), and with 4 KiB
    pages the kernel's faulting them in is most of a print's multi-scale start; huge pages make far
    fewer faults for the same output.  Where the kernel's THP setting is ``never`` the advice is
    ignored."""
    if "torch" not in sys.modules:
        os.environ.setdefault(TORCH_THP, "1")


def tune_for_rendering() -> None:
    from hires.core.canvas import return_memory_promptly
    from hires.kernels._config import prefer_workqueue
    prefer_workqueue()
    return_memory_promptly()


def huge_pages_in_use() -> bool:
    """Whether this process's torch backs its large blocks with huge pages: asked for (in the
    environment torch loaded with) and not switched off in the kernel (its THP setting ``never``)."""
    if os.environ.get(TORCH_THP) != "1":
        return False
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as fh:
            return "[never]" not in fh.read()
    except OSError:
        return False
