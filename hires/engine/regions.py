"""Style regions: masks that give each painting its part of the frame, and a part kept as the photo.

A mask is a gray image (white: the region, gray values soft weights), paired in order with the
``--style`` of the same position; ``--keep`` marks what stays photographic.  At each level the
masks are resampled with antialiasing to the level's size and made into one weight map per region,
one byte per pixel:

* where masks overlap (their sum above one) they are normalised to sum to one;
* what no mask covers is the *rest* region: it takes the styles given without a mask, mixed by
  weight, or every style (mixed by weight) when each has a mask;
* the keep mask k scales every region by (1 - k): kept pixels carry no style loss (the content
  term holds them), and the photo is blended back over them by k at the end.

A region's statistics at a layer weight each position by the region's mean over the position's
pixels (the networks' average pooling: ``tiles.block_mean``) times the tile's ownership, so tiles
add up to the whole image's per-region statistics exactly, and a region's statistics see no pixel
of another region.  Statistics and style targets of region r of layer L are named
``region_key(L, r)``; without masks they are named by the layer alone, as before.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyvips

from hires.core.errors import InputError
from hires.core.io import _vips_message
from hires.engine.tiles import block_mean

ASPECT_TOLERANCE = 0.01  # a mask's aspect may differ from the output's by this share
STRIP = 512


def region_key(layer: str, region: int) -> str:
    """The name of region ``region``'s statistics and target at ``layer``."""
    return f"{layer}@{region}"


@dataclass(frozen=True)
class Region:
    """One style region: its name (the mask's file, or ``rest``) and the styles it takes (indices
    into the job's styles, mixed by their weights)."""
    name: str
    styles: tuple[int, ...]


@dataclass(frozen=True)
class Masks:
    """A job's masks: ``masks[i]`` belongs to style i; ``keep`` marks what stays photographic."""
    masks: tuple[Path, ...] = ()
    keep: Path | None = None

    def __bool__(self) -> bool:
        return bool(self.masks) or self.keep is not None

    def regions(self, n_styles: int) -> list[Region]:
        """The style regions: one per mask, then the rest (the unmasked styles, else all)."""
        out = [Region(Path(p).name, (i,)) for i, p in enumerate(self.masks)]
        rest = tuple(range(len(self.masks), n_styles)) or tuple(range(n_styles))
        return out + [Region("rest", rest)]

    def maps(self, n_styles: int, width: int, height: int, keep: bool = True) -> np.ndarray:
        """The style regions' weights at ``width`` x ``height``: (H, W, regions) uint8, 255 = 1; with
        ``keep`` False the kept part is not cut out (the weights sum to one everywhere)."""
        regions = self.regions(n_styles)
        loaded = [load_mask(p, width, height) for p in self.masks]
        keep = load_mask(self.keep, width, height) if self.keep is not None and keep else None
        out = np.empty((height, width, len(regions)), np.uint8)
        for y in range(0, height, STRIP):
            rows = slice(y, y + STRIP)
            m = np.zeros((min(STRIP, height - y), width, len(loaded)), np.float32)
            for i, a in enumerate(loaded):
                m[..., i] = a[rows] / 255
            m /= np.maximum(m.sum(axis=-1, keepdims=True), 1.0)
            w = np.concatenate([m, 1.0 - m.sum(axis=-1, keepdims=True)], axis=-1)
            if keep is not None:
                w *= 1.0 - keep[rows, :, None].astype(np.float32) / 255
            out[rows] = np.rint(np.clip(w, 0.0, 1.0) * 255)
        return out

    def keep_map(self, width: int, height: int) -> np.ndarray | None:
        """The keep mask at ``width`` x ``height`` (H, W) uint8, or None."""
        return None if self.keep is None else load_mask(self.keep, width, height)

    def shares(self, n_styles: int, width: int, height: int) -> list[tuple[str, float]]:
        """Each region's share of the frame (and the kept part's), from the masks at a small size."""
        s = min(1.0, 256 / max(width, height))
        w, h = max(1, round(width * s)), max(1, round(height * s))
        maps = self.maps(n_styles, w, h).astype(np.float64) / 255
        out = [(r.name, float(maps[..., i].mean())) for i, r in enumerate(self.regions(n_styles))]
        if self.keep is not None:
            out.append(("kept", float(load_mask(self.keep, w, h).mean() / 255)))
        return out


def load_mask(path, width: int, height: int) -> np.ndarray:
    """A mask file as gray (H, W) uint8 at exactly ``width`` x ``height``, antialiased (libvips'
    thumbnail shrinks by block averaging, then a lanczos kernel); transparency counts as black."""
    try:
        im = pyvips.Image.thumbnail(str(path), width, height=height, size="force", fail_on="error")
        if im.hasalpha():
            im = im.flatten(background=[0] * (im.bands - 1))
        im = im.colourspace("b-w")
        if im.format == "ushort":  # 16 bits: to 8, rounded
            im = (im / 257 + 0.5).cast("uchar")
        elif im.format in ("float", "double"):  # linear 0..1
            im = (im * 255 + 0.5).cast("uchar")
        im = im.extract_band(0)
        if (im.width, im.height) != (width, height):
            im = im.resize(width / im.width, vscale=height / im.height, kernel="linear")
            im = im.crop(0, 0, min(width, im.width), min(height, im.height)).gravity("north-west", width, height,
                                                                                   extend="copy")
        out = np.empty((height, width), np.uint8)
        region = pyvips.Region.new(im)
        for y in range(0, height, STRIP):
            h = min(STRIP, height - y)
            out[y:y + h] = np.frombuffer(region.fetch(0, y, width, h), np.uint8).reshape(h, width)
        return out
    except pyvips.Error as e:
        raise InputError(f"mask: {str(path)!r} is corrupt or truncated: {_vips_message(e)}") from None


def tile_regions(crop: np.ndarray, own: dict[int, np.ndarray]) -> list[dict[int, np.ndarray]]:
    """Each region's weight of every position of a tile's feature maps: the tile's ownership
    ``own`` (per stride) times the region's mean over the position's pixels.  ``crop``: the level's
    region maps (H, W, regions) uint8 under the tile's region."""
    out = []
    for r in range(crop.shape[-1]):
        m = crop[..., r].astype(np.float32) / 255
        out.append({s: (w * block_mean(m, s)).astype(np.float32) for s, w in own.items()})
    return out


def blend_kept(canvas: np.ndarray, photo: np.ndarray, keep: np.ndarray, after_strip=None) -> None:
    """canvas = k * photo + (1 - k) * canvas, in strips (the photo where the keep mask is white)."""
    for y in range(0, canvas.shape[0], STRIP):
        k = keep[y:y + STRIP, :, None].astype(np.float32) / 255
        canvas[y:y + STRIP] += k * (photo[y:y + STRIP] - canvas[y:y + STRIP])
        if after_strip is not None:
            after_strip()
