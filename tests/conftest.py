from pathlib import Path

import numpy as np
import pytest

from hires import process

# the tests drive the engine and kernels directly, in the process settings a render runs with
process.tune_for_rendering()

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
BUNDLED = ROOT / "hires" / "data"


def data(rel: str, bundled: str | None = None) -> Path:
    """A test image from ../shared/data, else the copy bundled in the package."""
    p = SHARED / rel
    if p.exists():
        return p
    if bundled is not None:
        return BUNDLED / bundled
    pytest.skip(f"{p} not available")


@pytest.fixture
def content_path():
    return data("contents/chelsea.png", "chelsea.png")


@pytest.fixture
def style_path():
    return data("styles/vangogh_starry_night_1889.jpg", "vangogh_starry_night_1889.jpg")


@pytest.fixture
def texture_path():
    return data("textures/stone_bricks_ambientcg_bricks102.jpg", "stone_bricks_ambientcg_bricks102.jpg")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch):
    """No test sees real weights or writes into the user's torch or hires cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HIRES_CACHE_DIR", str(tmp_path / "hires-cache"))  # measured tile costs
    monkeypatch.delenv("HIRES_WEIGHTS", raising=False)


FAST = dict(base_size=64, iterations=(6,), style_layers=("relu1_1", "relu2_1", "relu3_1"),
            content_layer="relu3_1", memory="8GiB", init="content")
