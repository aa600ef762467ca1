"""The bundled Magenta network: verified weights, and torch modules that reproduce the reference
outputs the conversion stored (the de-quantised ONNX graphs run by onnxruntime)."""
import zipfile
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hires import magenta
from hires.errors import WeightsError

ROOT = Path(__file__).resolve().parents[1]


def test_predictor_and_transformer_match_the_converted_graphs():
    a = magenta.load_arrays()
    predictor, transformer = magenta.networks()
    with torch.no_grad():
        b = predictor(torch.from_numpy(a["reference/style_image"]).permute(0, 3, 1, 2))
        out = transformer(torch.from_numpy(a["reference/content_image"]).permute(0, 3, 1, 2),
                          torch.from_numpy(a["reference/bottleneck"]).reshape(1, -1))
    np.testing.assert_allclose(b.numpy(), a["reference/bottleneck"].reshape(1, -1), atol=1e-4)
    ref = a["reference/stylised"]
    assert ref.std() > 0.05  # a real picture, not a constant
    np.testing.assert_allclose(out.permute(0, 2, 3, 1).numpy(), ref, atol=1e-4)


def test_weights_are_verified_before_loading(tmp_path):
    bad = tmp_path / "magenta.npz"
    bad.write_bytes(magenta.WEIGHTS.read_bytes()[:-10] + b"0123456789")
    (tmp_path / "magenta.sha256").write_text(magenta.WEIGHTS.with_suffix(".sha256").read_text())
    with pytest.raises(WeightsError, match="fails verification"):
        magenta.load_arrays.__wrapped__(bad)


def test_the_wheel_carries_the_weights_and_the_licence(tmp_path):
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                        str(ROOT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    wheel = next(tmp_path.glob("hires-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for want in ("hires/models/magenta.npz", "hires/models/magenta.sha256", "hires/models/LICENSE-magenta.txt",
                 "hires/models/NOTICE.md", "hires/magenta.py"):
        assert want in names, want
