"""Which device and arithmetic a render runs on: ``--device`` (CUDA where present) and
``--precision`` (bfloat16 only where the CPU computes it natively)."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from hires.core.errors import OptionError


def bf16_supported(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX): oneDNN also runs bf16 on
    plain AVX512 by emulation, slower than fp32, which torch's own check does not tell apart."""
    try:
        flags = set(Path(cpuinfo).read_text().split())
    except OSError:  # not Linux: torch's check
        try:
            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            return False
    return bool(flags & {"avx512_bf16", "amx_bf16"}) and not isa_restricted()


def isa_restricted() -> bool:
    """torch restricted below AVX-512 in this process (``ATEN_CPU_CAPABILITY``, or oneDNN's
    ``ONEDNN_MAX_CPU_ISA`` below its bf16 ISAs): bf16 would then be emulated, far slower than fp32
    (two orders of magnitude slower), as on a CPU without it."""
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa and isa != "ALL" and not any(k in isa for k in ("AVX512_CORE_BF16", "AMX", "AVX10")):
        return True
    return not torch.backends.cpu.get_cpu_capability().upper().startswith("AVX512")


def pick_precision(name: str, device: torch.device) -> str:
    """'fp32' or 'bf16' for ``--precision`` on ``device``."""
    if name == "auto":
        return "bf16" if device.type == "cpu" and bf16_supported() else "fp32"
    if name == "bf16" and device.type == "cpu" and not bf16_supported():
        raise OptionError("--precision bf16: this CPU has no native bfloat16 (AVX512-BF16 or AMX); "
                          "use --precision fp32 or auto")
    return name


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise OptionError("--device cuda: no CUDA device is available here; use --device cpu or auto")
    return torch.device(name)
