"""The feature networks' layer tables and cost model, without torch (config, pyramid, plan use them).

Two parts make every network hires optimises with:

* VGG19's convolutional part (``relu1_1`` ... ``relu5_4``, torchvision's indices), random or
  pretrained: its first layers carry colour and fine texture.
* MobileNetV2 (``mb0`` ... ``mb13``), the trunk of Magenta's pretrained style predictor bundled
  with hires: ``mbN`` is the ReLU6 output of block N's 1x1 expansion (``mb0``: the stem's output,
  which block 0 takes without expanding).  Its stride-2 steps are anti-aliased (hires.engine.mobile), so
  every layer is shift-equivariant on its stride and tiles of a frame give the frame's features.

``hybrid`` (the offline default) is the random VGG19's relu1_1 and relu2_1 beside MobileNetV2's
blocks 3, 6 and 13, content at block 10 (docs/networks.md says why).  ``vgg19`` and ``random``
use VGG layers alone.  Layer ``index`` orders layers by depth within a part (VGG first); the cost
of a set of layers is each part's cost up to its deepest layer in the set.
"""
from __future__ import annotations

from dataclasses import dataclass

# VGG19 configuration "E": channels per conv, "M" a pooling layer
CFG = [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"]
# MobileNetV2 (width 1.0) blocks 0..16: (expansion channels or None, output channels, depthwise stride)
MOBILE_BLOCKS = [(None, 16, 1), (96, 24, 2), (144, 24, 1), (144, 32, 2), (192, 32, 1), (192, 32, 1),
                 (192, 64, 2), (384, 64, 1), (384, 64, 1), (384, 64, 1), (384, 96, 1), (576, 96, 1),
                 (576, 96, 1), (576, 160, 2), (960, 160, 1), (960, 160, 1), (960, 320, 1)]
MOBILE_STEM = 32
MOBILE_DEEPEST = 13   # mb14 on is at stride 32, past the tiles' alignment (hires.engine.tiles.ALIGN)
MOBILE_OFFSET = 1000  # mobile layers' indices, after every VGG layer's


@dataclass(frozen=True)
class Layer:
    name: str
    index: int      # depth order (torchvision's index for VGG layers)
    channels: int
    stride: int     # input px per position of its map
    radius: int     # input px an activation can see on each side
    part: str       # "vgg" or "mobile"
    flop: float     # forward FLOP per input px of its part up to and including it
    act: float      # float32 bytes per input px of the activations autograd keeps, up to it


def _vgg_rows():
    """The radius: a 3x3 conv adds one step of the current stride on each side, a 2x2 pool one more
    before the stride doubles."""
    rows, block, conv, idx, ch, stride, radius, flop, act = [], 1, 1, 0, 3, 1, 0, 0.0, 12.0
    for v in CFG:
        if v == "M":
            radius += stride
            stride *= 2
            act += ch * 4.0 / stride**2
            rows.append(Layer(f"pool{block}", idx, ch, stride, radius, "vgg", flop, act))
            idx, block, conv = idx + 1, block + 1, 1
        else:
            flop += 2.0 * ch * v * 9 / stride**2
            ch, radius = v, radius + stride
            act += ch * 4.0 / stride**2
            rows.append(Layer(f"conv{block}_{conv}", idx, ch, stride, radius, "vgg", flop, act))
            act += ch * 4.0 / stride**2
            rows.append(Layer(f"relu{block}_{conv}", idx + 1, ch, stride, radius, "vgg", flop, act))
            idx, conv = idx + 2, conv + 1
    return rows


def _mobile_rows():
    """A stride-2 step is a 3x3 convolution and a 3x3 binomial blur sampled every second position,
    run as one 5x5 convolution at stride 2 (hires.engine.mobile): it adds two steps of the current stride
    on each side."""
    stride, radius = 1, 2                                  # the stem's conv and blur
    flop = 2.0 * 3 * MOBILE_STEM * 25 / 4
    act = 12.0 + MOBILE_STEM * 4.0 * 2 / 4                  # the step's output and its relu6, at half size
    stride, ch = 2, MOBILE_STEM
    rows = [Layer("mb0", MOBILE_OFFSET, ch, stride, radius, "mobile", flop, act)]
    for n, (expand, out, step) in enumerate(MOBILE_BLOCKS[:MOBILE_DEEPEST + 1]):
        if n:
            flop += 2.0 * ch * expand / stride**2
            act += 2 * expand * 4.0 / stride**2
            rows.append(Layer(f"mb{n}", MOBILE_OFFSET + n, expand, stride, radius, "mobile", flop, act))
        if n == MOBILE_DEEPEST:
            break
        mid = expand or ch
        taps, after = (9, stride) if step == 1 else (25, 2 * stride)
        flop += 2.0 * mid * taps / after**2 + 2.0 * mid * out / after**2
        # the depthwise step's output, the relu6 after it, the projection
        act += (2 * mid + out) * 4.0 / after**2
        radius += stride * step
        stride = after
        ch = out
    return rows


LAYERS: dict[str, Layer] = {row.name: row for row in (*_vgg_rows(), *_mobile_rows())}
VGG_NAMES = [n for n, r in LAYERS.items() if r.part == "vgg"]

NETWORKS = ("hybrid", "vgg19", "random")
# (style layers, content layer) of each network when the settings leave them to it
DEFAULT_LAYERS = {
    "vgg19": (("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "relu4_2"),
    "random": (("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"), "relu4_2"),
    "hybrid": (("relu1_1", "relu2_1", "mb3", "mb6", "mb13"), "mb10"),
}


# The order in which the levels keep a network's default style layers: each finer level drops the
# last one still kept.  VGG's by depth.  The hybrid's fine levels keep relu1_1 (colour) and mb3 (the
# pretrained network's small shapes): on a 100% crop of a print's 3000 px level they gave fine
# brush-like curls where relu1_1 + relu2_1 gave grain, in 0.64x the time (conv1_2 at full resolution
# is the hybrid's costliest layer), docs/networks.md.  relu2_1 goes before mb6: a print's 1500 px
# level (20 L-BFGS evaluations a tile) then evaluates 2.8x faster (0.27 s against 0.76 s a 656 px
# tile), with the pretrained block's shapes instead of the random layer's grain
KEEP_ORDER = {"hybrid": ("relu1_1", "mb3", "mb6", "relu2_1", "mb13")}


def keep_rank(name: str, network: str) -> tuple[int, int]:
    """Sort key of style layers, kept longest first (see KEEP_ORDER)."""
    order = KEEP_ORDER.get(network, ())
    return (order.index(name) if name in order else len(order), LAYERS[name].index)


def layers_of(network: str) -> list[str]:
    """The layer names ``network`` can give."""
    return list(LAYERS) if network == "hybrid" else VGG_NAMES


def deepest(layers) -> str:
    return max(layers, key=lambda n: LAYERS[n].index)


def by_part(layers) -> dict[str, str]:
    """{part: its deepest layer among ``layers``}."""
    out: dict[str, str] = {}
    for n in layers:
        row = LAYERS[n]
        if row.part not in out or row.index > LAYERS[out[row.part]].index:
            out[row.part] = n
    return out


def _names(layers) -> list[str]:
    return [layers] if isinstance(layers, str) else list(layers)


def flops_per_pixel(layers) -> float:
    """Forward FLOP per input px (2 x multiply-adds) of the network computing ``layers`` (a name or
    several), each part up to its deepest layer asked for, and of each layer's Gram product
    (C x C per position: at 64 channels and full size, relu1_1's Gram is 2.4x its convolution's
    work; a finest-level evaluation of the hybrid spends a quarter of its time in them)."""
    names = _names(layers)
    net = sum(LAYERS[n].flop for n in by_part(names).values())
    return net + sum(2.0 * LAYERS[n].channels ** 2 / LAYERS[n].stride ** 2 for n in dict.fromkeys(names))


# The first layer, made band by band as its weighted Gram alone (hires.engine.bandgram) when it is a style
# layer and nothing else reads it: the deepest VGG layer asked for, and not the content layer.
# Autograd then keeps none of its activations, only the padded input and its gradient
BANDED = "relu1_1"
BANDED_BYTES = 2 * 3 * 4.0


def banded(style_layers, content_layer: str | None = None) -> str | None:
    """``BANDED`` when a level of these layers (a statistics pass: style layers alone) makes it band
    by band, else None."""
    named = (*style_layers, content_layer) if content_layer else tuple(style_layers)
    vgg = [n for n in named if LAYERS[n].part == "vgg"]
    if BANDED in style_layers and content_layer != BANDED and deepest(vgg) == BANDED:
        return BANDED
    return None


def activation_bytes_by_part(layers, banded_layer: str | None = None) -> dict[str, float]:
    """{part: float32 bytes per input px of the activations autograd keeps for ``layers`` in it},
    ``banded_layer`` (see ``banded``) made without them (its padded input counted with VGG's)."""
    made = [n for n in _names(layers) if n != banded_layer]
    out = {part: LAYERS[n].act for part, n in by_part(made).items()}
    if banded_layer:
        out["vgg"] = out.get("vgg", 0.0) + BANDED_BYTES
    return out


def receptive_radius(layers) -> int:
    return max(LAYERS[n].radius for n in _names(layers))


def stride(name: str) -> int:
    return LAYERS[name].stride
