"""`make test` runs the engine's numerical tests a second time with torch restricted to AVX2 (the
CPUs most artists have: no AVX-512, no bfloat16).  This checks that the restriction took effect
there, so that second run is not the first one again."""
import os

import pytest
import torch

RESTRICTED = os.environ.get("ATEN_CPU_CAPABILITY") == "avx2"


@pytest.mark.skipif(not RESTRICTED, reason="runs in make test's AVX2 pass")
def test_torch_runs_on_avx2_only():
    from hires.core.device import pick_precision
    assert torch.backends.cpu.get_cpu_capability() == "AVX2"
    assert os.environ.get("ONEDNN_MAX_CPU_ISA") == "AVX2"
    # as on a CPU without bf16: --precision auto runs fp32 (bf16 would be emulated, far slower)
    assert pick_precision("auto", torch.device("cpu")) == "fp32"
