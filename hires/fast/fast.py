"""Feed-forward stylisation with the Magenta network, at any size inside the memory budget.

The transformer's conditional instance norms need each channel's mean and variance over the
whole image.  At sizes where the whole frame does not fit, it runs tile by tile (tiles with a
context margin of at least its receptive radius, so every owned output pixel is exactly the whole
frame's): one statistics pass per CIN layer gathers that layer's sums and sums of squares over
the tiles' owned positions with the numba moments kernel, with the earlier layers' statistics fixed,
and a last pass writes the output; between passes each tile's state is kept (hires.fast.tilestates), so
a tile resumes at the layer it stopped at and the network runs about once per tile.  That is the
engine's global-Gram idea applied to instance norm.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from hires.core import io
from hires.engine import magenta
from hires.core.canvas import path_of, release, trim
from hires.engine.stats import Moments
from hires.engine.regions import Masks
from hires.engine.tiles import ALIGN, Tile, grid, take
from hires.fast.tilestates import TileStates

log = logging.getLogger(__name__)

MARGIN = -(-max(magenta.RECEPTIVE_RADIUS, magenta.MultiStyleTransformer.receptive_radius) // ALIGN) * ALIGN  # 64
# peak bytes per region pixel of a transformer pass, allocator slack included: measured 330 for one
# pass; 490 over a tiled 6000x4500 run with glibc's mmap threshold at 16 MiB (MMAP_THRESHOLD), 560 at
# glibc's default (which was 10% faster) and 440 at 4 MiB (40% slower)
BYTES_PER_PX = 500
# the 26-style network keeps 32 channels at full resolution: 429 bytes per px against 301 for the
# arbitrary one in the same one-pass measurement at 1024x1024, so 500 x 429 / 301
BUILTIN_BYTES_PER_PX = 720
MMAP_THRESHOLD = 16 << 20
# the tiles' kept states (hires.fast.tilestates), bytes per image px: the arbitrary network's largest is
# 8 channels at full size before its last norm (32 B/px), with the tiles' context margins about 44;
# they may take this share of what the budget leaves beside the images, the rest going to the tiles
STATE_BYTES_PER_PX = 44
# with style regions, per region a tile's weights: its crop (uint8), as float32 at full size and
# pooled to the norms' strides 2 and 4 (the mixed norm makes no map beyond the plain one's output)
REGION_BYTES_PER_PX = 8
STATE_SHARE = 0.3
FIXED_BYTES = 400 << 20     # interpreter, torch, numba, libvips and the two networks (measured ~340 MiB)


def to_nchw(a: np.ndarray, device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].contiguous().to(device)


def working_size(width: int, height: int, fast_size: int) -> tuple[int, int]:
    """The transformer's size: the output's, or its long side scaled to ``fast_size``, in multiples
    of 4 (the transformer downsamples twice)."""
    scale = min(1.0, fast_size / max(width, height)) if fast_size else 1.0
    return max(16, round(width * scale / 4) * 4), max(16, round(height * scale / 4) * 4)


def bytes_per_px(builtin: bool) -> int:
    return BUILTIN_BYTES_PER_PX if builtin else BYTES_PER_PX


def region_bytes_per_px(masks: Masks) -> int:
    """What style regions add to a tile's bytes per px (none without masks)."""
    return REGION_BYTES_PER_PX * (len(masks.masks) + 1) if masks else 0


@dataclass(frozen=True)
class Tiling:
    """How the transformer runs over an image inside a budget: the tile, and the RAM its tiles'
    kept states may take (hires.fast.tilestates; beyond it they go to disk where there is a folder)."""
    tile: int
    room: float


def tiling(budget: int, width: int, height: int, buffers_bytes: int, per_px: int = BYTES_PER_PX) -> Tiling:
    """The largest tile (a multiple of ALIGN) whose region fits what the budget leaves beside
    ``buffers_bytes`` of images held and the tiles' kept states (up to STATE_SHARE of that room)."""
    room = budget * 0.9 - FIXED_BYTES - buffers_bytes
    if _side(room, per_px) >= max(width, height) or width * height * per_px <= room:
        return Tiling(max(width, height), 0.0)
    keep = min(STATE_BYTES_PER_PX * width * height, STATE_SHARE * max(room, 0.0))
    return Tiling(max(_side(room - keep, per_px), 4 * ALIGN), keep)


def _side(room: float, per_px: int) -> int:
    side = int((max(room, 0) / per_px) ** 0.5) - 2 * MARGIN
    return side // ALIGN * ALIGN


@dataclass
class FastReport:
    tiles: int
    passes: int         # sweeps over the tiles: one per CIN layer's statistics, then the one that writes
    work: float = 1.0   # the network steps run, in whole passes over the tiles (1.0: every tile ran once)
    spilled: int = 0    # tile states kept on disk


class TiledTransformer:
    """A CIN network (the arbitrary transformer, or the 26-style one with ``network``) over an
    image of any size, tile by tile, with exact whole-image instance norm.

    Layer k's statistics are gathered over every tile's owned positions with the earlier layers'
    statistics fixed; each tile then waits at layer k, its state kept (hires.fast.tilestates: in RAM up
    to ``room`` bytes, then in ``buffers``' folder), and resumes from there for layer k + 1, so the
    network runs about once per tile rather than once per layer."""

    def __init__(self, code: torch.Tensor, device="cpu", network: magenta.CINNetwork | None = None,
                 regions: tuple[Masks, int] | None = None):
        """``code``: the style code (1, ...), or the norms' parameters themselves (a list of one list
        of (gamma, beta) per norm: ``style_norms``); with ``regions`` (the job's masks and its number
        of styles) one per style region, mixed per pixel by the masks."""
        self.net = network if network is not None else magenta.networks()[1]
        self.net.to(device)
        self.device = device
        self.regions = regions
        with torch.no_grad():
            self.region_params = ([self.net.style_params(c[None].to(device)) for c in code]
                                  if isinstance(code, torch.Tensor)
                                  else [[(g.to(device), b.to(device)) for g, b in p] for p in code])
        self.params = self.region_params[0]
        self._maps = None
        self._alike: list = []

    def __call__(self, content: np.ndarray, out: np.ndarray, tile: int, room: float = float("inf"),
                 buffers=None) -> FastReport:
        """Stylise float32 (H, W, 3) ``content`` (H, W multiples of 4) into ``out`` (RAM or memmap)."""
        H, W = content.shape[:2]
        if H % 4 or W % 4:
            raise ValueError(f"the transformer needs sizes in multiples of 4, got {W}x{H}")
        tiles = grid(W, H, tile, 0, MARGIN, False)
        if self.regions is not None:  # the regions' weights at this size, the kept part not cut out
            masks, n_styles = self.regions
            self._maps = masks.maps(n_styles, W, H, keep=False)
            self._alike = [alike(take(self._maps, t.region)) for t in tiles]  # once a tile, not once a norm
        n = len(self.params)
        stats: list = [None] * n
        kept = TileStates(len(tiles), room if len(tiles) > 1 else 0.0, buffers)
        self._steps = 0
        # Not inside canvas.reuse_memory, although a third of a print start's time is page faults of
        # fresh mappings: the heap it leaves behind, trimmed but fragmented, raised the next level's
        # optimisation peak from 2.9-3.0 to 3.5-4.1 GiB on a 4 GiB print (docs/archive/measurements.md)
        for k in range(n if len(tiles) > 1 else 0):
            stats[k] = self._layer_stats(content, tiles, stats, kept, k)
        self._paint(content, out, tiles, kept, stats)
        passes = n + 1 if len(tiles) > 1 else 1
        return FastReport(len(tiles), passes, self._steps / ((n + 1) * len(tiles)), kept.on_disk)

    def _paint(self, content, out, tiles: list[Tile], kept: TileStates, stats):
        """Every tile's output into ``out``, each from its state kept at the last norm."""
        n = len(self.params)
        for i, t in enumerate(tiles):
            y = self._advance(content, t, kept, i, n, stats)[0].permute(1, 2, 0).cpu().numpy()
            kept.drop(i)
            cy0, cy1, cx0, cx1 = t.core
            ry0, rx0 = t.region[0], t.region[2]
            out[cy0:cy1, cx0:cx1] = y[cy0 - ry0:cy1 - ry0, cx0 - rx0:cx1 - rx0]
            del y
            release(out, content)
            trim()

    def _advance(self, content, t: Tile, kept: TileStates, i: int, k: int, stats):
        """Tile ``i``'s state before norm ``k`` (its output when k is the last), from what was kept."""
        start, state = kept.get(i)
        with torch.no_grad():
            if state is None:
                state = self.net.begin(to_nchw(take(content, t.region), self.device))
                self._steps += 1
            else:
                state = tuple(None if p is None else p.to(self.device) for p in state)
            self._steps += k - start
            params = self.params if self._maps is None else RegionParams(
                self.region_params, take(self._maps, t.region), self._alike[i], self.net.norm_strides, self.device)
            return self.net.resume(state, start, k, params, stats)

    def _layer_stats(self, content, tiles: list[Tile], stats, kept: TileStates, k: int):
        """(mean, var) of CIN layer k's input over the whole image, from every tile's core."""
        s = self.net.norm_strides[k]
        acc = None
        for i, t in enumerate(tiles):
            state = self._advance(content, t, kept, i, k, stats)
            h = state[1]
            if acc is None:
                acc = Moments.empty(h.shape[1])
            wmap = np.zeros(h.shape[2:], np.float32)
            cy0, cy1, cx0, cx1 = t.core
            ry0, rx0 = t.region[0], t.region[2]
            wmap[(cy0 - ry0) // s:(cy1 - ry0) // s, (cx0 - rx0) // s:(cx1 - rx0) // s] = 1.0
            acc.add(h, wmap)
            kept.put(i, k, state)
            del h, state
            release(content)
            trim()
        mean, var = acc.mean_var()
        like = dict(dtype=torch.float32, device=self.device)
        return (torch.as_tensor(mean, **like).view(1, -1, 1, 1), torch.as_tensor(var, **like).view(1, -1, 1, 1))


def alike(crop: np.ndarray) -> torch.Tensor | None:
    """The regions' weights (regions,) where every pixel of ``crop`` (h, w, regions) uint8 has the
    same, else None.  Compared a row of bytes at a time, in place (a tile's crop is a view of the
    level's maps whose rows are runs of bytes; reduced per region, a 1500 px tile's took 0.12 s)."""
    first = crop[0, 0]
    rows = crop.reshape(crop.shape[0], -1)
    return torch.from_numpy(first.astype(np.float32)) / 255 if (rows == np.tile(first, crop.shape[1])).all() else None


class RegionParams:
    """Each norm's (gamma, beta) over a tile with style regions: every region's parameters mixed per
    position by the region's weight there (its mean over the position's pixels at the norm's stride,
    as a tile's statistics take it: average pooling, a part block at an edge the mean of what it
    has), made when a norm asks, so one norm's are held at a time (as one product: regions x
    channels by regions x positions, inside the norm: magenta.MixedParams)."""

    def __init__(self, region_params: list, crop: np.ndarray, same: torch.Tensor | None, strides: list[int],
                 device):
        """``crop``: the style region maps (h, w, regions) uint8 under the tile's region; ``same``:
        its weights where every pixel has the same (``alike``), else None.  Made for each stretch of
        norms a tile runs (once per norm): the weights are made only when a norm asks, and not at all
        where every pixel's are alike (a tile inside one region)."""
        self.region_params, self.strides, self.device = region_params, strides, device
        self.alike = same
        self.crop = crop
        self._weights: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.region_params[0])

    def weights(self, s: int) -> torch.Tensor:
        """Each region's weight at every position of a norm of stride ``s``: (regions, positions)."""
        if s not in self._weights:
            w = torch.from_numpy(self.crop).to(self.device).permute(2, 0, 1)[None].to(torch.float32).div_(255)
            w = w if s == 1 else F.avg_pool2d(w, s, s, ceil_mode=True)
            self._weights[s] = w[0].reshape(w.shape[1], -1).contiguous()
        return self._weights[s]

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        gammas = torch.stack([p[k][0].reshape(-1) for p in self.region_params], 1)   # (C, regions)
        betas = torch.stack([p[k][1].reshape(-1) for p in self.region_params], 1)
        if self.alike is not None:  # every position's weights alike: mixed per channel
            shape, w = self.region_params[0][k][0].shape, self.alike.to(self.device)
            return (gammas @ w).reshape(shape), (betas @ w).reshape(shape)
        return magenta.MixedParams(gammas, betas, self.weights(self.strides[k]))


# ---------------------------------------------------------------- the multi-scale start of prints

# each finer stage re-paints half the coarser stage's result, half the photo: the coarser strokes
# stay, the network paints its own strokes over them at the finer size (measured: with
# no photo the strokes blur, with no coarser stage the picture is a filtered photo)
REPAINT_MIX = 0.5
# the band split: below this blur (px at the first stage's scale) the first stage's picture, above
# it the last stage's strokes.  4 px keeps the first stage's shapes and colour and none of its
# upsampled speckle
BAND_SIGMA = 4.0
STRIP = 256


def stage_sizes(width: int, height: int, fast_size: int) -> list[tuple[int, int]]:
    """The cascade's working sizes: ``fast_size``, doubling, then the output's (multiples of 4)."""
    first = working_size(width, height, fast_size)
    sizes, long_side = [first], max(first)
    while 2 * long_side < max(width, height):
        long_side *= 2
        sizes.append(working_size(width, height, long_side))
    last = working_size(width, height, 0)
    return sizes + ([last] if last != first else [])


def cascade(stylist, content_at, sizes: list[tuple[int, int]], buffers, budget: int,
            progress=None) -> tuple[np.ndarray, FastReport]:
    """The content painted at every scale by ``stylist`` (hires.fast.stylecode.Stylist): the
    network at ``sizes[0]``, then at each finer size on REPAINT_MIX of the coarser result (resampled)
    and the rest the photo; the result is the last stage's strokes over the first stage's picture
    (the band split at BAND_SIGMA).
    ``content_at((w, h), out)`` loads the content at a size into ``out``; ``buffers`` (RAM or disk)
    holds the stages.  Returns the last stage's size image and the tiling of its run."""
    from scipy.ndimage import gaussian_filter
    runner, prev, first, report = stylist.runner(), None, None, FastReport(0, 0)
    for k, (w, h) in enumerate(sizes):
        x = content_at((w, h), buffers.empty(f"photo{k}", (h, w, 3)))
        if prev is not None:
            up = io.resize(prev, w, h, out=buffers.empty(f"coarser{k}", (h, w, 3)))
            if prev is not first:
                buffers.discard(prev)
            for y in range(0, h, STRIP):
                x[y:y + STRIP] = REPAINT_MIX * up[y:y + STRIP] + (1 - REPAINT_MIX) * x[y:y + STRIP]
                release(x, up)
            buffers.discard(up)
            del up
        result = buffers.empty(f"stage{k}", (h, w, 3))
        held = sum(a.nbytes for a in (x, result, first) if a is not None and path_of(a) is None)
        t = tiling(budget, w, h, held, stylist.bytes_per_px)
        report = runner(x, result, t.tile, t.room, buffers)
        buffers.discard(x)
        del x
        if progress is not None:
            progress(w, h)
        first = result if first is None else first
        prev = result
    if prev is first:
        return prev, report
    (w0, h0), (h, w) = sizes[0], prev.shape[:2]
    band = gaussian_filter(first - io.resize(prev, w0, h0), (BAND_SIGMA, BAND_SIGMA, 0), mode="reflect")
    band = io.resize(band.astype(np.float32), w, h, out=buffers.empty("band", (h, w, 3)))
    for y in range(0, h, STRIP):
        prev[y:y + STRIP] = np.clip(prev[y:y + STRIP] + band[y:y + STRIP], 0.0, 1.0)
        release(prev, band)
    buffers.discard(band)
    buffers.discard(first)
    return prev, report


# the tiled transformer's time in untiled passes over its tiles' regions: each tile runs once, its
# states kept between the statistics passes: measured 1.05 at 4096x3072 in 4 tiles and 1.18 at
# 6000x4500 in 12 (4 GiB), 1.75 at 6000x4500 in 48 tiles with the states on disk (2 GiB, the images
# in RAM); before the states were kept, 9.0 (benchmarks/results/fast_6000x4500.json)
TILED_PASSES = 1.15
SPILLED_PASSES = 1.75


# the transformer's seconds per px grow with its tile's side: over the 512 px rate measure_rate gives,
# 1.3x at 1024 px, 1.6x at 1728, 2.0x at 2080 on this machine with 4 KiB pages; the cascade's
# largest stages run 1700-2100 px tiles, where the 512 px rate alone read a print's multi-scale start
# at 34 s against 59 s measured.  Most of that growth was the kernel faulting in the larger tiles'
# fresh blocks: with huge pages (process.huge_pages_for_torch) the rate itself is flat from 512 to
# 1728 px (362-414 ns/px, three runs each), and what grows with the stages is the resampling and
# loading around the network: the print's start measured 34.9 s (4 GiB) and 41.2 s (2 GiB) against
# 43.0 and 47.4 s estimated at 0.4, which 0.2 puts at 33.1 and 41.4 (docs/archive/measurements.md)
RATE_SIDE = 512
SIDE_EXPONENT = 0.4
SIDE_EXPONENT_HUGE_PAGES = 0.2


def stage_seconds(width: int, height: int, budget: int, rate: float, per_px: int = BYTES_PER_PX) -> float:
    """Estimated seconds of the transformer over a ``width`` x ``height`` stage of the cascade, at
    ``rate`` seconds per px of an untiled RATE_SIDE px pass (measure_rate), tiled as the cascade tiles it."""
    layout = tiling(budget, width, height, 3 * width * height * 12, per_px)
    tiles = grid(width, height, layout.tile, 0, MARGIN, False)
    px = sum(t.shape[0] * t.shape[1] for t in tiles)
    side = max(math.sqrt(max(t.shape[0] * t.shape[1] for t in tiles)), RATE_SIDE)
    from hires.core.process import huge_pages_in_use
    rate *= (side / RATE_SIDE) ** (SIDE_EXPONENT_HUGE_PAGES if huge_pages_in_use() else SIDE_EXPONENT)
    if len(tiles) == 1:
        return px * rate
    kept_in_ram = STATE_BYTES_PER_PX * width * height <= layout.room
    return px * rate * (TILED_PASSES if kept_in_ram else SPILLED_PASSES)


def measure_rate(device="cpu", side: int = RATE_SIDE) -> float:
    """Seconds per px of one untiled pass of the transformer on this machine (after a warm-up)."""
    import time
    runner = TiledTransformer(torch.zeros(1, magenta.BOTTLENECK), device)
    x = np.random.default_rng(0).random((side, side, 3), dtype=np.float32)
    y = np.empty_like(x)
    runner(x, y, side)  # the shape's first run pays its set-up (one warm-up at 128 px read 2x fast or slow)
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter()
        runner(x, y, side)
        best = min(best, time.perf_counter() - t)
    return best / (side * side)
