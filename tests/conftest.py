import json
import os
from pathlib import Path

import numpy as np
import pytest

from hires.core import process

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
    skip_or_fail(f"{p} not available, and no bundled image stands in for it")


def skip_or_fail(reason: str):
    """Skip a test whose need this machine does not meet; under CI (``CI`` set), where every test
    must run, fail instead: a clean clone's run must not silently test less."""
    (pytest.fail if os.environ.get("CI") else pytest.skip)(reason)


@pytest.fixture
def full_disk(tmp_path):
    """A 2 MiB file system (a tmpfs; mounting it needs root, as CI has)."""
    import subprocess
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        skip_or_fail("cannot mount a small file system here (not root)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


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


# The slow and long markers come from measured durations, not a hand list: tests/durations.json holds
# each test's set-up and call time from the last `pytest --record-durations` (make durations), and a
# test that took SLOW_SECONDS or more is marked slow (`make test-fast` leaves it out), LONG_SECONDS or
# more also long (`make test` leaves it out, `make test-all` runs it: the renders that measure seams,
# peaks and resumes at sizes that take a quarter minute each, about half the whole suite's time).
# A test not yet measured is neither until it is.  A test listed in tests/twins.py stays long once its
# quick twin stands in for it in `make test`, even if a later measurement reads it just under the line.
DURATIONS = Path(__file__).with_name("durations.json")
SLOW_SECONDS = 2.0
LONG_SECONDS = 8.0


def recorded_durations() -> dict[str, float]:
    try:
        return {k: float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def pytest_addoption(parser):
    parser.addoption("--record-durations", action="store_true",
                     help="write each test's set-up and call time to tests/durations.json (the source of the slow "
                          "and long markers)")


def pytest_collection_modifyitems(config, items):
    from twins import TWINS
    durations = recorded_durations()
    for item in items:
        took = durations.get(item.nodeid, 0.0)
        if took >= SLOW_SECONDS:
            item.add_marker(pytest.mark.slow)
        if took >= LONG_SECONDS or item.nodeid.split("[")[0] in TWINS:
            item.add_marker(pytest.mark.long)


_MEASURED: dict[str, float] = {}


def pytest_runtest_logreport(report):
    if report.when == "setup":  # a fixture's render counts as its test's
        _MEASURED[report.nodeid] = round(report.duration, 2)
    elif report.when == "call":
        _MEASURED[report.nodeid] = round(_MEASURED.get(report.nodeid, 0.0) + report.duration, 2)


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if config.getoption("--record-durations") and not hasattr(config, "workerinput") and _MEASURED:
        merged = {**recorded_durations(), **_MEASURED}
        DURATIONS.write_text(json.dumps(dict(sorted(merged.items())), indent=0) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say which tests of this run took LONG_SECONDS or more without being marked long (the next
    ``make durations`` moves them out of ``make test``: list each in tests/twins.py with a quick
    twin)."""
    from twins import TWINS
    marked = {k for k, v in recorded_durations().items() if v >= LONG_SECONDS}
    crossed = sorted(k for k, v in _MEASURED.items() if v >= LONG_SECONDS and k not in marked
                     and k.split("[")[0] not in TWINS
                     and not k.startswith("tests/test_browser.py::"))
    if crossed:
        terminalreporter.write_sep("-", f"{len(crossed)} test(s) took {LONG_SECONDS:g} s or more and are not marked long")
        for k in crossed:
            terminalreporter.write_line(f"{_MEASURED[k]:6.1f} s  {k}  (give it a quick twin: tests/twins.py)")
