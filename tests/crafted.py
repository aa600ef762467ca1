"""Crafted ``.hstyle`` files, each made the way a hostile sender would, to test that every reader
(render, batch, ``style show``, the studio) refuses it in one line inside the memory budget."""
from __future__ import annotations

import io
import json
import pickle
import zipfile

import numpy as np

from hires.fast import hstyle

BOMB_BYTES = 768 << 20   # what the zip bomb's member inflates to: more than a 1 GiB budget leaves


def members(style: hstyle.FittedStyle) -> dict[str, np.ndarray]:
    """The npz members ``hstyle.to_bytes`` writes, checksum included."""
    with np.load(io.BytesIO(hstyle.to_bytes(style)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def npz(parts: dict[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **parts)
    return buf.getvalue()


def with_checksum(parts: dict[str, np.ndarray]) -> bytes:
    """``parts`` with a checksum made for them: past the checksum, to the checks behind it."""
    parts = {k: v for k, v in parts.items() if k != "checksum"}
    return npz({**parts, "checksum": np.frombuffer(hstyle._checksum(parts).encode(), np.uint8)})


def _npy_header(descr: str, shape: tuple) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue()


def _zip(parts: dict[str, np.ndarray], extra: dict[str, bytes], compress=zipfile.ZIP_STORED) -> bytes:
    """A zip of the good ``parts`` as npz members beside raw ``extra`` members (name -> bytes)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compress) as z:
        for name, a in parts.items():
            if name not in extra:
                z.writestr(f"{name}.npy", npz_member(a))
        for name, raw in extra.items():
            z.writestr(f"{name}.npy", raw)
    return buf.getvalue()


def npz_member(a: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.lib.format.write_array(out, a, allow_pickle=False)
    return out.getvalue()


def zip_bomb(parts: dict[str, np.ndarray]) -> bytes:
    """A painting member of BOMB_BYTES zeros behind a true npy header, deflated to a few MiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for name, a in parts.items():
            if name != "painting_0":
                z.writestr(f"{name}.npy", npz_member(a))
        with z.open("painting_0.npy", "w", force_zip64=True) as fh:
            fh.write(_npy_header("|u1", (BOMB_BYTES,)))
            block = bytes(16 << 20)
            for _ in range(BOMB_BYTES // len(block)):
                fh.write(block)
    return buf.getvalue()


def _header(parts, **changes) -> np.ndarray:
    header = json.loads(bytes(parts["header"]).decode())
    for key, value in changes.items():
        header[key] = value
    return np.frombuffer(json.dumps(header).encode(), np.uint8)


def _renamed(parts, name: str) -> bytes:
    header = json.loads(bytes(parts["header"]).decode())
    header["paintings"][0]["name"] = name
    return with_checksum({**parts, "header": np.frombuffer(json.dumps(header).encode(), np.uint8)})


# name -> (make(members) -> file bytes, what the one-line refusal says)
CRAFTED = {
    "zip bomb": (zip_bomb, "declares its member 'painting_0'"),
    "raw bytes member": (lambda m: _zip(m, {"gamma_00": b"\x00" * 128}), "damaged"),
    "raw pickle member": (lambda m: _zip(m, {"beta_02": pickle.dumps(["not", "an", "array"])}), "damaged"),
    "nested header": (lambda m: with_checksum({**m, "header": np.frombuffer(b"[" * 30000 + b"]" * 30000, np.uint8)}),
                      "no header"),
    "1 TiB header": (lambda m: _zip(m, {"painting_0": _npy_header("|u1", (1 << 40,)) + b"\xff\xd8\xff"}),
                     "'painting_0'"),
    "absurd values": (lambda m: with_checksum({**m, "gamma_04": np.full_like(m["gamma_04"], 3e38)}), "beyond"),
    "escapes in a name": (lambda m: _renamed(m, "starry\x1b[2J\x1b[H.jpg"), "painting 0"),
    "object dtype": (lambda m: _zip(m, {"beta_00": _npy_header("|O", (32,)) + b"\x00" * 256}), "'beta_00'"),
}
