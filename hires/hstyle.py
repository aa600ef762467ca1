"""Fitted styles: the ``.hstyle`` file ``hires style fit`` writes and every style option reads.

A fitted style is the conditional instance norms' scale and shift (gamma, beta per channel of each
of the feed-forward network's 13 norms: 694 numbers) fitted to a painting's statistics
(hires.stylefit), with the painting itself embedded (a JPEG of at most EMBED_SIDE px), so that the
optimised method, whose style statistics need the painting, takes the file alone.

The file is an uncompressed npz, read with ``allow_pickle=False`` (no code in it can run): members
``header`` (UTF-8 JSON: format, version, each painting's name, SHA-256 and weight, what was fitted,
the fit's settings and held-out figures), ``gamma_NN`` and ``beta_NN`` (float32, one per norm),
``painting_K`` (JPEG bytes) and ``checksum`` (SHA-256 over every other member's name, dtype, shape
and bytes).  A file is refused in one line when it is not that, is truncated or edited (checksum),
comes from a newer format version, or holds shapes the network does not have or values that are not
finite numbers.
"""
from __future__ import annotations

import hashlib
import io as _bytes_io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hires.errors import InputError
from hires.safefiles import read_regular

SUFFIX = ".hstyle"
FORMAT = "hires-style"
VERSION = 1
MAX_FILE_BYTES = 16 << 20   # what is read of a file at most (hires writes about 0.5 MiB a painting)
EMBED_SIDE = 1280           # the embedded painting's long side at most
EMBED_QUALITY = 90
MAX_PAINTINGS = 4           # (4 embedded paintings stay under 4 MiB)


@dataclass(frozen=True)
class Painting:
    name: str        # the file name it was fitted from
    sha256: str      # of that file
    weight: float    # its share of the style
    jpeg: bytes      # the painting, at most EMBED_SIDE px


@dataclass(frozen=True)
class FittedStyle:
    norms: tuple[tuple[np.ndarray, np.ndarray], ...]   # (gamma, beta) float32 (C,) per norm, in order
    paintings: tuple[Painting, ...]
    info: dict = field(default_factory=dict)           # "fitted", "fit" (settings), "heldout" (figures)

    def torch_params(self, device="cpu") -> list:
        return as_torch(self.norms, device)


def as_torch(norms, device="cpu") -> list:
    """Norms' (gamma, beta) arrays as the network takes them: (1, C, 1, 1) tensors of their own."""
    import torch
    return [tuple(torch.from_numpy(a.copy()).view(1, -1, 1, 1).to(device) for a in pair) for pair in norms]


class Embedded(NamedTuple):
    """A painting embedded in a ``.hstyle`` file, read as a style image (hires.io reads it)."""
    source: Path
    index: int

    def __str__(self) -> str:
        return f"{self.source}[{self.index}]"

    @property
    def name(self) -> str:
        return f"{self.source.name}[{self.index}]"

    def jpeg(self) -> bytes:
        return load(self.source).paintings[self.index].jpeg


def is_hstyle(path) -> bool:
    return not isinstance(path, Embedded) and Path(path).suffix.lower() == SUFFIX


def image_sources(styles) -> list[tuple[int, object, float]]:
    """Every style image of ``styles`` ((path, weight) pairs) as (style index, source, weight): a
    path as itself, a ``.hstyle`` as its embedded paintings, each with its share of the weight."""
    out = []
    for i, (path, weight) in enumerate(styles):
        if is_hstyle(path):
            ps = load(path).paintings
            total = sum(p.weight for p in ps)
            out += [(i, Embedded(Path(path), k), weight * p.weight / total) for k, p in enumerate(ps)]
        else:
            out.append((i, path, weight))
    return out


def norm_channels() -> list[int]:
    """Channels of each conditional instance norm of the bundled arbitrary network, in order."""
    from hires import magenta
    return [n.gamma.out_channels for n in magenta.networks()[1].norms()]


# ---------------------------------------------------------------- writing

def _members(style: FittedStyle) -> dict[str, np.ndarray]:
    header = {"format": FORMAT, "version": VERSION, **style.info,
              "paintings": [{"name": p.name, "sha256": p.sha256, "weight": p.weight} for p in style.paintings]}
    members = {"header": np.frombuffer(json.dumps(header, sort_keys=True).encode(), np.uint8)}
    for k, (g, b) in enumerate(style.norms):
        members[f"gamma_{k:02d}"] = np.ascontiguousarray(g, np.float32)
        members[f"beta_{k:02d}"] = np.ascontiguousarray(b, np.float32)
    for k, p in enumerate(style.paintings):
        members[f"painting_{k}"] = np.frombuffer(p.jpeg, np.uint8)
    return members


def _checksum(members: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(members):
        a = members[name]
        h.update(f"{name}:{a.dtype.str}:{a.shape}\n".encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def to_bytes(style: FittedStyle) -> bytes:
    members = _members(style)
    members["checksum"] = np.frombuffer(_checksum(members).encode(), np.uint8)
    buf = _bytes_io.BytesIO()
    np.savez(buf, **members)
    return buf.getvalue()


def save(style: FittedStyle, path, overwrite: bool = False) -> Path:
    """Write ``style`` to ``path`` (a temporary file beside it, linked into place: an existing file
    is replaced only with ``overwrite``, and a failed write leaves nothing)."""
    from hires.output import create_exclusively, partial_path, publish
    path = Path(path)
    tmp = partial_path(path)
    create_exclusively(tmp)
    try:
        with open(tmp, "wb") as fh:
            fh.write(to_bytes(style))
            fh.flush()
            os.fsync(fh.fileno())
        publish(tmp, path, overwrite)
    finally:
        tmp.unlink(missing_ok=True)
    return path


# ---------------------------------------------------------------- reading

def load(path, what: str = "--style") -> FittedStyle:
    """The fitted style in ``path``, checked (see the module docstring); an InputError naming
    ``what`` otherwise.  Read once per file version (its size and modification time)."""
    p = Path(path)
    try:
        st = os.stat(p)
    except OSError as e:
        raise InputError(f"{what}: {str(path)!r} cannot be read ({e.strerror or e}); check the path") from None
    return _load(str(p.resolve()), st.st_size, st.st_mtime_ns, what)


@lru_cache(maxsize=16)
def _load(path: str, size: int, mtime: int, what: str) -> FittedStyle:
    name = repr(path)
    try:
        data = read_regular(path, MAX_FILE_BYTES)
    except OSError as e:
        raise InputError(f"{what}: {name} cannot be read as a fitted style ({e.strerror or e})") from None
    try:
        with np.load(_bytes_io.BytesIO(data), allow_pickle=False) as z:
            members = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise InputError(f"{what}: {name} is not a hires fitted style, or is damaged or cut short ({type(e).__name__}); "
                         "make it again with `hires style fit`") from None
    return parse(members, name, what)


def parse(members: dict[str, np.ndarray], name: str, what: str = "--style") -> FittedStyle:
    """A FittedStyle from an npz's members, every check made (see the module docstring)."""
    def refuse(why: str) -> InputError:
        return InputError(f"{what}: {name} {why}")
    header = _header(members, refuse)
    checksum = members.pop("checksum", None)
    if checksum is None or checksum.dtype != np.uint8 or bytes(checksum).decode("ascii", "replace") != _checksum(members):
        raise refuse("fails its checksum (edited, damaged or cut short); make it again with `hires style fit`")
    channels = norm_channels()
    norms = []
    for k, c in enumerate(channels):
        g, b = members.get(f"gamma_{k:02d}"), members.get(f"beta_{k:02d}")
        if g is None or b is None or g.dtype != np.float32 or b.dtype != np.float32 or g.shape != (c,) or b.shape != (c,):
            raise refuse(f"does not hold the network's norm {k} ({c} float32 scales and shifts)")
        if not (np.isfinite(g).all() and np.isfinite(b).all()):
            raise refuse(f"holds values that are not finite numbers (norm {k})")
        norms.append((g, b))
    if sum(n.startswith(("gamma_", "beta_")) for n in members) != 2 * len(channels):
        raise refuse("holds norms the network does not have")
    paintings = _paintings(header, members, refuse)
    info = {k: v for k, v in header.items() if k not in ("format", "version", "paintings")}
    return FittedStyle(tuple(norms), paintings, info)


def _header(members, refuse) -> dict:
    raw = members.get("header")
    try:
        header = json.loads(bytes(raw).decode()) if raw is not None and raw.dtype == np.uint8 else None
    except (UnicodeDecodeError, ValueError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise refuse("is not a hires fitted style (no header); make it with `hires style fit`")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise refuse(f"has no valid format version ({version!r})")
    if version > VERSION:
        raise refuse(f"is format version {version}, made by a newer hires (this one reads version {VERSION}); "
                     "upgrade hires")
    return header


def _paintings(header: dict, members, refuse) -> tuple[Painting, ...]:
    listed = header.get("paintings")
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_PAINTINGS:
        raise refuse(f"lists no paintings (or more than {MAX_PAINTINGS})")
    out = []
    for k, entry in enumerate(listed):
        jpeg = members.get(f"painting_{k}")
        ok = (isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("sha256"), str)
              and isinstance(entry.get("weight"), (int, float)) and not isinstance(entry.get("weight"), bool)
              and math.isfinite(entry["weight"]) and entry["weight"] > 0)
        if not ok or jpeg is None or jpeg.dtype != np.uint8 or jpeg.ndim != 1 or bytes(jpeg[:3]) != b"\xff\xd8\xff":
            raise refuse(f"does not hold its painting {k} as a JPEG with a name and a positive weight")
        size = _jpeg_size(bytes(jpeg))
        if size is None or max(size) > EMBED_SIDE:
            raise refuse(f"holds a painting {k} of {'an unreadable size' if size is None else '%dx%d px' % size}; "
                         f"hires embeds at most {EMBED_SIDE} px")
        out.append(Painting(entry["name"], entry["sha256"], float(entry["weight"]), bytes(jpeg)))
    if sum(n.startswith("painting_") for n in members) != len(out):
        raise refuse("holds paintings its header does not list")
    return tuple(out)


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's header, nothing decoded; None when libvips cannot read it."""
    import pyvips
    try:
        im = pyvips.Image.new_from_buffer(data, "", access="sequential")
    except pyvips.Error:
        return None
    return im.width, im.height


def describe(style: FittedStyle, path) -> list[str]:
    """What ``hires style show`` prints: the paintings, what was fitted and how, the held-out figures."""
    lines = [f"{path}: hires fitted style, format version {VERSION}"]
    for p in style.paintings:
        lines.append(f"  painting: {p.name} (weight {p.weight:g}, SHA-256 {p.sha256[:16]}..., "
                     f"embedded {len(p.jpeg) // 1024} KiB)")
    lines.append(f"  fitted: {style.info.get('fitted', '?')} ({sum(g.size + b.size for g, b in style.norms)} numbers "
                 f"over {len(style.norms)} norms)")
    for key in ("fit", "heldout"):
        if isinstance(style.info.get(key), dict):
            lines.append(f"  {key}: " + ", ".join(f"{k} {_fmt(v)}" for k, v in style.info[key].items()))
    return lines


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
