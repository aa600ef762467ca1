"""The memory model of a render (bytes), checked against measured peak RSS in benchmarks/:
  fixed     interpreter, torch, numba, libvips and the network weights
  canvases  per level pixel: canvas (blended in place), its weight map, the content image
  styles    the style images at the level's scale
  tile      activations autograd keeps per tile pixel (sum over layers of channels / stride^2 x 4)
            times a factor for gradients and backward temporaries, plus the L-BFGS history
"""
from __future__ import annotations

from hires.core.layers import activation_bytes_by_part
from hires.engine.pyramid import Level

MiB = 1 << 20
FIXED_BYTES = 640 * MiB  # ~430 MiB after imports, random net and numba kernels, plus the transients of
#                         statistics passes and resizes that peak RSS showed (3.79 GiB measured, 3.49 planned)
CANVAS_BYTES_PER_PX = 4 * (3 + 1 + 3)
# bytes a tile's optimisation holds per byte of the activations autograd keeps: the backward's own
# tensors and the loss's feature copies when every large block is mapped afresh (measured ~0.9-1.0
# for the network alone) ...
BACKWARD_FACTOR = 1.6
# ... and when the evaluations reuse freed blocks from the heap (canvas.reuse_memory), plus the free
# blocks the heap keeps.  Measured: an 816 px relu2_1 tile (10 L-BFGS evaluations) peaks 1368 MiB
# above the process mapped, 2053-2094 MiB reused in fp32 (1557-1801 in bf16)
REUSE_FACTOR = 2.4
# ... per byte of each part's kept activations, relative to VGG's (on which the factors above were
# measured): MobileNetV2's backward holds more beside what it keeps (the gradients of its 96-144
# channel expansions, oneDNN's buffers for its depthwise and strided steps).  Measured on a 6000x4500
# print's 1500-6000 px levels, 21 level runs at 2 and 4 GiB, native and AVX2: with relu1_1 made band
# by band (hires.engine.bandgram) the MobileNetV2 part holds almost all a tile's memory, and the tiles
# phases peaked up to 1.38 times what REUSE_FACTOR gives its kept activations, above the level's
# buffers and the optimiser's state (0.6-1.07 times with relu1_1's activations beside it, which
# hid it; docs/archive/measurements.md)
PART_FACTOR = {"vgg": 1.0, "mobile": 1.4}
LBFGS_HISTORY = 10   # L-BFGS keeps this many pairs of the tile's size


def tile_bytes(region_px: int, level: Level, optimizer: str, disk: bool = False, reuse: bool = True) -> float:
    kept = sum(b * PART_FACTOR[part] for part, b in activation_bytes_by_part(level.layers, level.banded).items())
    act = kept * (REUSE_FACTOR if reuse else BACKWARD_FACTOR) * region_px
    hist = (LBFGS_HISTORY * 2 + 4) * 3 * 4 * region_px if optimizer == "lbfgs" else 4 * 3 * 4 * region_px
    return act + hist + (CANVAS_BYTES_PER_PX * region_px if disk else 0)
