import json
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


@pytest.fixture(scope="session")
def _session_cost_cache(tmp_path_factory):
    """One tile-cost cache for the whole run, as a user's machine keeps one: a render or plan in a
    test probes a tile shape the first time it meets it, not in every test (the probes took about
    a fifth of the suite: 13 min 37 s against 10 min 56 s on a 2-core Xeon).  Costs only set
    estimates, never what is rendered."""
    return tmp_path_factory.mktemp("hires-cache")


@pytest.fixture(autouse=True)
def _isolate(tmp_path, monkeypatch, _session_cost_cache):
    """No test sees real weights or writes into the user's torch or hires cache."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("HIRES_CACHE_DIR", str(_session_cost_cache))  # measured tile costs
    monkeypatch.delenv("HIRES_WEIGHTS", raising=False)


@pytest.fixture
def fresh_cost_cache(tmp_path, monkeypatch):
    """An empty tile-cost cache of the test's own, for tests of measuring and caching itself."""
    monkeypatch.setenv("HIRES_CACHE_DIR", str(tmp_path / "hires-cache"))
    return tmp_path / "hires-cache"


FAST = dict(base_size=64, iterations=(6,), style_layers=("relu1_1", "relu2_1", "relu3_1"),
            content_layer="relu3_1", memory="8GiB", init="content")


# The slow marker comes from measured durations, not a hand list: tests/durations.json holds each
# test's call time from the last `pytest --record-durations` (make durations), and a test that took
# SLOW_SECONDS or more is marked slow, so that `make test-fast` leaves it out.  A test not yet
# measured is not slow until it is.
DURATIONS = Path(__file__).with_name("durations.json")
SLOW_SECONDS = 2.0


def recorded_durations() -> dict[str, float]:
    try:
        return {k: float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help="write each test's call time to tests/durations.json (the slow marker's source)")


def pytest_collection_modifyitems(config, items):
    durations = recorded_durations()
    for item in items:
        if durations.get(item.nodeid, 0.0) >= SLOW_SECONDS:
            item.add_marker(pytest.mark.slow)


_MEASURED: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when == "call":
        _MEASURED[report.nodeid] = round(report.duration, 2)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if config.getoption("--record-durations") and not hasattr(config, "workerinput") and _MEASURED:
        merged = {**recorded_durations(), **_MEASURED}
        DURATIONS.write_text(json.dumps(dict(sorted(merged.items())), indent=0) + "\n")
