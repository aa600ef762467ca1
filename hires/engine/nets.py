"""Feature networks: VGG19's convolutional part, built from torch.nn.

``vgg19`` loads ImageNet weights in torchvision's state-dict layout (``features.N.weight``),
from ``--weights``, ``$HIRES_WEIGHTS`` or torch's hub checkpoint folder.  Only torchvision's own
file is "verified": its SHA-256 starts with the prefix in ``vgg19-dcbb9e9d.pth``, whatever the
file is called (a prefix in another file's name proves nothing: anyone can name a file), and a
file of that name that fails the check is refused as damaged.  Any other file is unverified:
loaded as a plain state dict (``weights_only``: no code runs) and refused unless every VGG19
tensor is there, of the right shape and finite.  ``random`` is the same
architecture with a seeded initialisation: no download, the default when no weights exist.
Nothing here downloads unless ``fetch_weights`` is called.
"""
from __future__ import annotations

import http.client
import logging
import os
import urllib.error
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from hires.core import layers
from hires.engine.bandgram import Bands, conv_relu_bands, conv_relu_gram, pad
from hires.engine.borders import FrameConv2d
from hires.core.errors import OptionError, WeightsError
from hires.core.layers import CFG
from hires.core.safefiles import file_sha256, not_regular

log = logging.getLogger(__name__)

WEIGHTS_NAME = "vgg19-dcbb9e9d.pth"
WEIGHTS_URL = "https://download.pytorch.org/models/" + WEIGHTS_NAME
WEIGHTS_BYTES = 574673361
OFFICIAL_PREFIX = "dcbb9e9d"  # of torchvision's file's SHA-256 (its name's convention)

LAYERS = [(n, r.index, r.channels, r.stride, r.radius) for n, r in layers.LAYERS.items() if r.part == "vgg"]
LAYER_NAMES = list(layers.LAYERS)
LAYER_INDEX = {n: r.index for n, r in layers.LAYERS.items()}
LAYER_STRIDE = {n: r.stride for n, r in layers.LAYERS.items()}
LAYER_RADIUS = {n: r.radius for n, r in layers.LAYERS.items()}
CONV_INDICES = [r[1] for r in LAYERS if r[0].startswith("conv")]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VGG19Features(nn.Module):
    """VGG19 ``features`` with torchvision's indices; forward returns the asked-for layers."""

    def __init__(self, pooling: str = "avg"):
        super().__init__()
        mods, in_ch = [], 3
        for v in CFG:
            if v == "M":
                # average pooling gives smoother gradients for synthesis (Gatys et al. 2016)
                # ceil_mode: an odd side keeps its last row or column (a position of one pixel
                # row), so that every pixel of any frame is seen by every layer (tiles.ownership)
                mods.append(nn.AvgPool2d(2, 2, ceil_mode=True) if pooling == "avg"
                            else nn.MaxPool2d(2, 2, ceil_mode=True))
            else:
                # in place: the conv output is needed by nothing else, and a fresh activation-sized
                # allocation costs page faults that rival the arithmetic at shallow layers
                mods += [FrameConv2d(in_ch, v, 3, padding=1), nn.ReLU(inplace=True)]
                in_ch = v
        self.features = nn.Sequential(*mods)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.to(memory_format=torch.channels_last)
        self.eval()

    def set_padding(self, mode: str) -> None:
        """'reflect' or 'zeros' for photos, 'circular' for seamless textures."""
        for m in self.features:
            if isinstance(m, nn.Conv2d):
                m.padding_mode = mode

    @property
    def compute_dtype(self) -> torch.dtype:
        """The arithmetic of the convolutions after the first (which stays float32, see set_precision)."""
        return self.features[2].weight.dtype

    def set_precision(self, precision: str) -> None:
        """'fp32', or 'bf16': the convolutions after the first in bfloat16 (about twice as fast on
        CPUs with AVX512-BF16); the activations handed out, and so the statistics, stay float32.
        The first convolution sees the pixels themselves and stays float32: bfloat16's 8-bit
        mantissa cannot tell pixel changes under about 1/255 apart, and a refinement's small steps
        then leave the loss flat (a two-tile pass ended at loss 0.020 against 0.012)."""
        rest = self.features[2:]
        if precision == "bf16":
            if self.compute_dtype != torch.bfloat16:
                self._fp32 = {k: v.clone() for k, v in rest.state_dict().items()}
                rest.to(torch.bfloat16)
        elif self.compute_dtype != torch.float32:
            rest.to(torch.float32)
            rest.load_state_dict(self._fp32)  # the weights as they were, not rounded

    def forward(self, x: torch.Tensor, layers) -> dict[str, torch.Tensor]:
        """``x``: (1, 3, H, W) RGB in [0, 1].  Returns {layer name: float32 activation}."""
        wanted = {LAYER_INDEX[name]: name for name in layers}
        if not wanted:
            return {}
        last = max(wanted)
        out = {}
        # channels-last runs oneDNN's convolutions about 1.5x faster on CPU at shallow depths
        # (measured: relu2_1 forward+backward on 768 px, 2.75 s -> 1.80 s on 2 cores)
        h = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        for i, m in enumerate(self.features):
            if isinstance(m, nn.Conv2d) and h.dtype != m.weight.dtype:
                h = h.to(m.weight.dtype)
            # the ReLUs work in place (see __init__), except after a conv layer asked for by
            # name: that one must come back as the conv's own output, negatives included
            h = torch.relu(h) if i - 1 in wanted and isinstance(m, nn.ReLU) else m(h)
            if i in wanted:
                out[wanted[i]] = h.float() if h.dtype == torch.bfloat16 else h
            if i == last:
                break
        return out

    def first_gram(self, x: torch.Tensor, bands: Bands) -> tuple[torch.Tensor, torch.Tensor]:
        """relu1_1's (hires.core.layers.BANDED) weighted Gram and mean sums over ``x`` (1, 3, H, W), made
        band by band (hires.engine.bandgram), padded as the first convolution pads."""
        conv = self.features[0]
        return conv_relu_gram(self._first_input(x), conv.weight, conv.bias, bands)

    def first_bands(self, x: torch.Tensor, rows):
        """relu1_1 of ``x`` a band of ``rows`` at a time (hires.engine.bandgram.conv_relu_bands), no gradient."""
        conv = self.features[0]
        return conv_relu_bands(self._first_input(x), conv.weight, conv.bias, rows)

    def _first_input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` normalised and padded as the first convolution pads (by one, the frame's rule)."""
        conv = self.features[0]
        return pad(((x - self.mean) / self.std).to(conv.weight.dtype), conv.padding_mode)


def random_network(seed: int = 0, pooling: str = "avg") -> VGG19Features:
    """VGG19 with seeded He-normal weights: no download, good for textures and colour."""
    net = VGG19Features(pooling)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.features:
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels * 9
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
                m.bias.zero_()
    return net


class HybridFeatures(nn.Module):
    """The random VGG19 (colour and fine texture) beside MobileNetV2's pretrained blocks (shapes):
    layers of either part by name (hires.core.layers), each part run up to its deepest layer asked for.
    ``set_precision`` applies to the VGG part; the MobileNetV2 part stays float32 (a small share of
    the work, and its depthwise convolutions gain nothing from bfloat16)."""

    def __init__(self, vgg: VGG19Features, mobile):
        super().__init__()
        self.vgg, self.mobile = vgg, mobile

    def set_padding(self, mode: str) -> None:
        self.vgg.set_padding(mode)
        self.mobile.set_padding(mode)

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.vgg.compute_dtype

    def set_precision(self, precision: str) -> None:
        self.vgg.set_precision(precision)

    def first_gram(self, x: torch.Tensor, bands: Bands) -> tuple[torch.Tensor, torch.Tensor]:
        return self.vgg.first_gram(x, bands)

    def first_bands(self, x: torch.Tensor, rows):
        return self.vgg.first_bands(x, rows)

    def forward(self, x: torch.Tensor, names) -> dict[str, torch.Tensor]:
        parts = {"vgg": [], "mobile": []}
        for n in names:
            parts[layers.LAYERS[n].part].append(n)
        out = self.vgg(x, parts["vgg"]) if parts["vgg"] else {}
        if parts["mobile"]:
            out.update(self.mobile(x, parts["mobile"]))
        return out


def hybrid_network(seed: int = 0, pooling: str = "avg") -> HybridFeatures:
    from hires.engine.mobile import MobileFeatures
    return HybridFeatures(random_network(seed, pooling), MobileFeatures())


# ---------------------------------------------------------------- finding and verifying weights

def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


@dataclass
class WeightsLookup:
    path: Path | None
    source: str          # "--weights", "HIRES_WEIGHTS", "hub cache" or "not found"
    searched: list[str]


def find_weights(explicit: str | os.PathLike | None = None) -> WeightsLookup:
    """Where the vgg19 weights are: --weights, then $HIRES_WEIGHTS, then torch's hub cache."""
    searched = []
    if explicit:
        p = Path(explicit).expanduser()
        if not p.is_file():
            what = f"{not_regular(p)}, not a regular file" if p.exists() else "does not exist"
            raise WeightsError(f"--weights: {str(explicit)!r} {'is ' if p.exists() else ''}{what}; give the path of "
                               f"{WEIGHTS_NAME} or run `hires weights fetch`")
        return WeightsLookup(p, "--weights", [str(p)])
    env = os.environ.get("HIRES_WEIGHTS")
    if env:
        p = Path(env).expanduser()
        searched.append(f"$HIRES_WEIGHTS={p}")
        if p.is_file():
            return WeightsLookup(p, "HIRES_WEIGHTS", searched)
        log.warning("HIRES_WEIGHTS=%s does not exist; ignoring it", env)
    hub = hub_checkpoint_dir() / WEIGHTS_NAME
    searched.append(str(hub))
    if hub.is_file():
        return WeightsLookup(hub, "hub cache", searched)
    return WeightsLookup(None, "not found", searched)


def check_weights(path: Path) -> tuple[str, bool]:
    """(the file's SHA-256, whether it is torchvision's official file).  A file named as the
    official one that is not it (truncated, damaged) is refused."""
    try:
        got = file_sha256(path)
    except OSError as e:
        raise WeightsError(f"--weights: {str(path)!r} cannot be read ({e.strerror or e}); give {WEIGHTS_NAME}") from None
    official = got.startswith(OFFICIAL_PREFIX)
    if not official and Path(path).name == WEIGHTS_NAME:
        raise WeightsError(f"--weights: {str(path)!r} fails verification (SHA-256 {got[:12]}..., expected "
                           f"{OFFICIAL_PREFIX}...): the file is truncated or not {WEIGHTS_NAME}; delete it and run "
                           "`hires weights fetch`")
    return got, official


def load_vgg19(path: Path, pooling: str = "avg", verify: bool = True) -> VGG19Features:
    """Build VGG19 and load torchvision-format weights from ``path`` (no code runs on load); see
    the module docstring for what is verified and what is checked."""
    path = Path(path)
    if verify:
        check_weights(path)
    try:
        with warnings.catch_warnings():  # torch's own warnings and advice are not for hires' users
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a pickle of other objects (code), or a damaged file
        raise WeightsError(f"--weights: {str(path)!r} is not a plain state dict of tensors (hires loads nothing "
                           f"else, so that no code in a file runs); give {WEIGHTS_NAME}") from None
    if not isinstance(state, dict):
        raise WeightsError(f"--weights: {str(path)!r} holds a {type(state).__name__}, not a state dict")
    net = VGG19Features(pooling)
    ours = {}
    for i in CONV_INDICES:
        for kind in ("weight", "bias"):
            key = f"features.{i}.{kind}"
            if key not in state:
                raise WeightsError(f"--weights: {str(path)!r} has no {key}; it is not a VGG19 state dict")
            want = getattr(net.features[i], kind).shape
            tensor = state[key]
            if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
                raise WeightsError(f"--weights: {str(path)!r}: {key} is not a tensor of numbers")
            if tuple(tensor.shape) != tuple(want):
                raise WeightsError(f"--weights: {key} has shape {tuple(tensor.shape)}, VGG19 needs {tuple(want)}")
            if not torch.isfinite(tensor).all():
                raise WeightsError(f"--weights: {str(path)!r}: {key} holds NaN or infinite values; "
                                   "the file is damaged or not VGG19 weights")
            ours[key] = tensor.float()
    net.load_state_dict(ours, strict=False)  # the classifier.* keys of the file are not used
    return net


HYBRID_NOTE = ("network: hybrid (the bundled pretrained MobileNetV2 for shapes, a seeded VGG19's first layers "
               "for colour and grain)")


def resolve_network(network: str, weights=None) -> str:
    """The network ``auto`` stands for: vgg19 when its weights are found, else hybrid."""
    if network != "auto":
        return network
    return "vgg19" if find_weights(weights).path is not None else "hybrid"


def build_network(network: str = "auto", weights=None, pooling: str = "avg", seed: int = 0):
    """Return (net, name, message) for the asked-for network."""
    if network not in ("auto", *layers.NETWORKS):
        raise OptionError(f"--network: {network!r} is not one of auto, {', '.join(layers.NETWORKS)}")
    if network == "random":
        return random_network(seed, pooling), "random", "network: random (seeded VGG19, no weights)"
    if network == "hybrid":
        return hybrid_network(seed, pooling), "hybrid", HYBRID_NOTE
    found = find_weights(weights)
    if found.path is None:
        if network == "vgg19":
            raise WeightsError(f"--network vgg19: no weights found (looked in {', '.join(found.searched)}); "
                               "run `hires weights fetch` or pass --weights PATH")
        return hybrid_network(seed, pooling), "hybrid", HYBRID_NOTE + " (no VGG19 weights found; `hires weights fetch` gets them)"
    net = load_vgg19(found.path, pooling)
    official = check_weights(found.path)[1]
    return net, "vgg19", (f"network: vgg19 ({found.path}, from {found.source}, "
                          + ("verified" if official else f"unverified: not torchvision's {WEIGHTS_NAME}") + ")")


# ---------------------------------------------------------------- downloading

def fetch_weights(dest_dir: Path | None = None, url: str = WEIGHTS_URL, progress=None,
                  timeout: float = 30.0, expected: str = OFFICIAL_PREFIX) -> Path:
    """Download the weights with resume (HTTP Range) into ``dest_dir``, verify that their SHA-256
    starts with ``expected`` (torchvision's file's), rename into place.

    ``progress(done_bytes, total_bytes)`` is called as data arrives.
    """
    dest_dir = Path(dest_dir) if dest_dir else hub_checkpoint_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    name = url.rsplit("/", 1)[-1]
    final = dest_dir / name
    if final.is_file():
        if not file_sha256(final).startswith(expected):
            raise WeightsError(f"weights fetch: {str(final)!r} exists and is not the file asked for; move it away")
        return final
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the part file is already complete
            resp = None
        else:
            raise WeightsError(f"weights fetch: {url} answered {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise WeightsError(
            f"weights fetch: cannot reach {url} ({reason}). On a machine with internet, download that URL and "
            f"put the file at {final} or point HIRES_WEIGHTS at it") from None
    if resp is not None:
        with resp:
            _append_response(resp, part, have, progress)
    want = expected
    got = file_sha256(part)
    if not got.startswith(want):
        part.unlink()
        raise WeightsError(f"weights fetch: the download fails verification (SHA-256 {got[:12]}..., "
                           f"expected {want}...); it was deleted, run `hires weights fetch` again")
    os.replace(part, final)
    return final


def _append_response(resp, part: Path, have: int, progress) -> None:
    """Write an HTTP response into ``part``: appended when the server resumed at ``have`` bytes
    (206), else from the start; raise WeightsError if it stops short."""
    resumed = have and resp.status == 206
    total = int(resp.headers.get("Content-Length") or 0) + (have if resumed else 0)
    done = have if resumed else 0
    try:
        with open(part, "ab" if resumed else "wb") as fh:
            while block := resp.read(1 << 20):
                fh.write(block)
                done += len(block)
                if progress:
                    progress(done, total)
    except (http.client.HTTPException, OSError) as e:
        raise WeightsError(f"weights fetch: the download stopped at {done} of {total} bytes ({e}); "
                           "run `hires weights fetch` again to resume") from None
    if total and done < total:
        raise WeightsError(f"weights fetch: the download stopped at {done} of {total} bytes; "
                           "run `hires weights fetch` again to resume")
