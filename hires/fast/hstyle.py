"""Fitted styles: the ``.hstyle`` file ``hires style fit`` writes and every style option reads.

A fitted style is the conditional instance norms' scale and shift (gamma, beta per channel of each
of the feed-forward network's 13 norms: 694 numbers) fitted to a painting's statistics
(hires.fit.stylefit), with the painting itself embedded (a JPEG of at most EMBED_SIDE px), so that the
optimised method, whose style statistics need the painting, takes the file alone.

The file is an uncompressed npz, read with ``allow_pickle=False`` (no code in it can run): members
``header`` (UTF-8 JSON: format, version, each painting's name, SHA-256 and weight, what was fitted,
the fit's settings and held-out figures), ``gamma_NN`` and ``beta_NN`` (float32, one per norm),
``painting_K`` (JPEG bytes) and ``checksum`` (SHA-256 over every other member's name, dtype, shape
and bytes).  A file is refused in one line when it is not that, is truncated or edited (checksum),
comes from a newer format version, or holds shapes the network does not have or values that are not
finite numbers inside +-VALUE_LIMIT.  It is read in the order a zip allows (``read_members``): the
member list, each member's declared size and npy header checked against the format before anything is
inflated, so a crafted file cannot make the reader hold more than the format's own sizes.
"""
from __future__ import annotations

import hashlib
import io as _bytes_io
import json
import math
import os
import re
import zipfile
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import numpy as np

from hires.core.errors import InputError, NumericalError
from hires.core.safefiles import NPY_HEADER_BYTES, read_regular

SUFFIX = ".hstyle"
FORMAT = "hires-style"
VERSION = 1
MAX_FILE_BYTES = 16 << 20   # what is read of a file at most (hires writes about 0.5 MiB a painting)
EMBED_SIDE = 1280           # the embedded painting's long side at most
EMBED_QUALITY = 90
MAX_PAINTINGS = 4           # (4 embedded paintings stay under 4 MiB)
MAX_PAINTING_BYTES = 4 << 20  # one embedded JPEG at most (hires' are 0.2-0.9 MiB at EMBED_SIDE px)
MAX_HEADER_BYTES = 64 << 10   # the JSON header at most (hires writes about 1 KiB)
MAX_HEADER_DEPTH = 8          # how deeply the header's JSON may nest (hires' nests 3 deep)
MAX_TEXT = 256                # a painting's name at most, in characters
# the norms' scales and shifts at most, in size: the predictor gives |gamma| <= 5.7 and |beta| <= 16
# over the bundled and shared paintings, photos and textures, and a fit moves each by at most its
# learning rate a step (0.02: 4.6 in a 5-minute fit); beyond this the network paints nothing usable
VALUE_LIMIT = 100.0


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
    """A painting embedded in a ``.hstyle`` file, read as a style image (hires.core.io reads it)."""
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
    from hires.engine import magenta
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
    from hires.core.output import create_exclusively, partial_path, publish
    path = Path(path)
    if any(not _in_range(g, b) for g, b in style.norms):
        raise NumericalError(f"-o: the fitted numbers ran beyond +-{VALUE_LIMIT:g} (the fit diverged), and a "
                             "style file that no reader takes is not written; fit again with a lower learning rate")
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

    def refuse(why: str) -> InputError:
        return InputError(f"{what}: {printable(name)} {why}")
    return parse(read_members(data, refuse), refuse)


def _member_rules() -> dict[str, tuple[np.dtype, int, int]]:
    """Every member the format has: name -> (dtype, fewest elements, most elements)."""
    rules = {"header": (np.dtype(np.uint8), 2, MAX_HEADER_BYTES), "checksum": (np.dtype(np.uint8), 64, 64)}
    for k, c in enumerate(norm_channels()):
        rules[f"gamma_{k:02d}"] = rules[f"beta_{k:02d}"] = (np.dtype("<f4"), c, c)
    for k in range(MAX_PAINTINGS):
        rules[f"painting_{k}"] = (np.dtype(np.uint8), 4, MAX_PAINTING_BYTES)
    return rules


def read_members(data: bytes, refuse) -> dict[str, np.ndarray]:
    """The npz's members as arrays, read in the order a zip allows: the member list and each
    member's declared size, then its npy header (dtype, shape), checked against the format's rules
    before a byte of it is inflated; a member is inflated only up to the size it declared."""
    damaged = ("is not a hires fitted style, or is damaged or cut short ({}); make it again with "
               "`hires style fit`")
    rules = _member_rules()
    members: dict[str, np.ndarray] = {}
    try:
        with zipfile.ZipFile(_bytes_io.BytesIO(data)) as z:
            infos = z.infolist()
            if len(infos) > len(rules):
                raise refuse(f"holds {len(infos)} members; the format has at most {len(rules)}")
            for info in infos:
                stem = info.filename.removesuffix(".npy")
                if stem not in rules or not info.filename.endswith(".npy") or stem in members:
                    raise refuse(f"holds a member {printable(info.filename)!r} the format does not have")
                if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 1:
                    raise refuse(f"holds its member {stem!r} compressed or encrypted in a way hires does not write")
                dtype, fewest, most = rules[stem]
                if info.file_size > most * dtype.itemsize + NPY_HEADER_BYTES:
                    raise refuse(f"declares its member {stem!r} as {info.file_size} bytes, more than the format "
                                 "allows")
                with z.open(info) as fh:
                    members[stem] = _read_array(fh, stem, dtype, fewest, most, refuse)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError, ValueError, zlib.error) as e:
        raise refuse(damaged.format(type(e).__name__)) from None
    return members


def _read_array(fh, stem: str, dtype: np.dtype, fewest: int, most: int, refuse) -> np.ndarray:
    """One npy member: its header read and checked (a numeric dtype of the format's, one axis of a
    length it allows), then exactly that many bytes, nothing more."""
    version = np.lib.format.read_magic(fh)   # (ValueError when the member is not an npy array)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in read_header:
        raise ValueError(f"npy version {version}")
    shape, fortran, got = read_header[version](fh, max_header_size=NPY_HEADER_BYTES)
    if got != dtype or fortran or len(shape) != 1 or not fewest <= shape[0] <= most:
        raise refuse(f"holds its member {stem!r} as {got.str} {tuple(shape)}; the format has "
                     f"{dtype.str} of {fewest if fewest == most else f'{fewest} to {most}'} values")
    n = shape[0] * dtype.itemsize
    raw = fh.read(n + 1)     # (one more: a member longer than its header says is refused too)
    if len(raw) != n:
        raise ValueError(f"{stem} holds {len(raw)} bytes, not {n}")
    return np.frombuffer(raw, dtype)


def parse(members: dict[str, np.ndarray], refuse) -> FittedStyle:
    """A FittedStyle from an npz's members (``read_members``), every check made (see the module
    docstring); ``refuse(why)`` makes the error."""
    header = _header(members, refuse)
    checksum = members.pop("checksum", None)
    if checksum is None or bytes(checksum).decode("ascii", "replace") != _checksum(members):
        raise refuse("fails its checksum (edited, damaged or cut short); make it again with `hires style fit`")
    channels = norm_channels()
    norms = []
    for k, c in enumerate(channels):
        g, b = members.get(f"gamma_{k:02d}"), members.get(f"beta_{k:02d}")
        if g is None or b is None:
            raise refuse(f"does not hold the network's norm {k} ({c} float32 scales and shifts)")
        if not (np.isfinite(g).all() and np.isfinite(b).all()):
            raise refuse(f"holds values that are not finite numbers (norm {k})")
        if not _in_range(g, b):
            raise refuse(f"holds scales or shifts beyond +-{VALUE_LIMIT:g} (norm {k}: up to "
                         f"{max(np.abs(g).max(), np.abs(b).max()):.3g}), which no fit reaches; make it again "
                         "with `hires style fit`")
        norms.append((g, b))
    paintings = _paintings(header, members, refuse)
    info = {k: v for k, v in header.items() if k not in ("format", "version", "paintings")}
    return FittedStyle(tuple(norms), paintings, info)


def _header(members, refuse) -> dict:
    raw = members.get("header")
    try:
        text = bytes(raw).decode() if raw is not None else None
        header = json.loads(text) if text is not None and json_depth(text) <= MAX_HEADER_DEPTH else None
    except (UnicodeDecodeError, ValueError, RecursionError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise refuse("is not a hires fitted style (no header); make it with `hires style fit`")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise refuse(f"has no valid format version ({printable(repr(version))})")
    if version > VERSION:
        raise refuse(f"is format version {version}, made by a newer hires (this one reads version {VERSION}); "
                     "upgrade hires")
    return header


def _in_range(gamma: np.ndarray, beta: np.ndarray) -> bool:
    """One norm's scales and shifts are finite and within +-VALUE_LIMIT (what the reader takes, and
    so what ``save`` writes)."""
    return all(np.isfinite(a).all() and np.abs(a).max() <= VALUE_LIMIT for a in (gamma, beta))


def json_depth(text: str) -> int:
    """How deeply ``text``'s JSON arrays and objects nest, counted without parsing (so a header
    nested past the interpreter's recursion limit is measured, not recursed into)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _paintings(header: dict, members, refuse) -> tuple[Painting, ...]:
    listed = header.get("paintings")
    if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_PAINTINGS:
        raise refuse(f"lists no paintings (or more than {MAX_PAINTINGS})")
    out = []
    for k, entry in enumerate(listed):
        jpeg = members.get(f"painting_{k}")
        named = isinstance(entry, dict) and isinstance(entry.get("name"), str)
        if named and not (0 < len(entry["name"]) <= MAX_TEXT and entry["name"].isprintable()):
            raise refuse(f"names its painting {k} {printable(entry['name'][:MAX_TEXT])!r}: not a file name hires "
                         f"writes (printable, at most {MAX_TEXT} characters); make it again with `hires style fit`")
        ok = (named and isinstance(entry.get("sha256"), str) and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
              and isinstance(entry.get("weight"), (int, float)) and not isinstance(entry.get("weight"), bool)
              and math.isfinite(entry["weight"]) and 0 < entry["weight"] <= 1e6)
        if not ok or jpeg is None or bytes(jpeg[:3]) != b"\xff\xd8\xff":
            raise refuse(f"does not hold its painting {k} as a JPEG with a name, a SHA-256 and a positive weight")
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
    """What ``hires style show`` prints: the paintings, what was fitted and how, the held-out figures
    (every text from the file with its control characters escaped: a name cannot drive the terminal)."""
    lines = [f"{printable(str(path))}: hires fitted style, format version {VERSION}"]
    for p in style.paintings:
        lines.append(f"  painting: {printable(p.name)} (weight {p.weight:g}, SHA-256 {p.sha256[:16]}..., "
                     f"embedded {len(p.jpeg) // 1024} KiB)")
    lines.append(f"  fitted: {printable(str(style.info.get('fitted', '?')))} "
                 f"({sum(g.size + b.size for g, b in style.norms)} numbers over {len(style.norms)} norms)")
    for key in ("fit", "heldout"):
        if isinstance(style.info.get(key), dict):
            lines.append(f"  {key}: " + ", ".join(f"{printable(k)} {printable(_fmt(v))}"
                                                   for k, v in style.info[key].items()))
    return lines


def printable(text: str) -> str:
    """``text`` with every character that is not printable (escape sequences, newlines) escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
