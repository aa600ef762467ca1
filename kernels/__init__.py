"""numba kernels for hires, installed as ``hires.kernels``.

The public functions here validate their inputs and allocate outputs; the private
``_kernel`` functions in the submodules only compute (the scikit-image pattern).
"""
from hires.kernels.gram import gram_accumulate, gram_finalize, moments_accumulate
from hires.kernels.blend import blend_into, feather_window
from hires.kernels.patches import patchmatch, vote

__all__ = ["gram_accumulate", "gram_finalize", "moments_accumulate", "blend_into", "feather_window", "patchmatch",
           "vote"]
