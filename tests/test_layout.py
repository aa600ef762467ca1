"""The package's shape: no import cycles (tests/import_graph.py), and the command starts without torch."""
import subprocess
import sys
from pathlib import Path

import import_graph

ROOT = Path(__file__).resolve().parents[1]


def test_no_import_cycles_at_module_level_or_through_deferred_imports():
    top, deferred = import_graph.graph()
    assert import_graph.cycles(top) == []
    both = {m: top[m] | deferred[m] for m in top}
    assert import_graph.cycles(both) == []


def test_each_package_imports_only_its_own_floor_and_those_below():
    """core at the bottom, the engine and the fast network above it, planning and rendering above
    them, the API, then fit and the studio, the command line on top (tests/import_graph.FLOORS);
    deferred and type-hint imports count as any do."""
    top, deferred = import_graph.graph()
    assert import_graph.upward({m: top[m] | deferred[m] for m in top}) == []


def test_the_floor_rule_finds_an_upward_or_sideways_import():
    edges = {"hires.core.io": {"hires.engine.tiles", "hires.core.errors"},     # up
             "hires.fit.stylefit": {"hires.studio.preview", "hires.api"},     # sideways; down
             "hires.commands.cli": {"hires.rendering.pipeline"}, "hires": {"hires.api"}}
    assert import_graph.upward(edges) == [("hires.core.io", "hires.engine.tiles"),
                                          ("hires.fit.stylefit", "hires.studio.preview")]
    assert set(import_graph.FLOORS) == {p.name for p in (ROOT / "hires").iterdir()
                                        if (p / "__init__.py").exists()} | {"api", "kernels"}


def test_the_docs_layout_names_every_package_and_module():
    """docs/how-it-works.md's Layout lists each sub-package with each of its modules (a module moved,
    added or renamed without a word there fails here)."""
    import re
    text = (ROOT / "docs" / "how-it-works.md").read_text()
    layout = text[text.index("## Layout"):]
    items = re.split(r"\n(?=\d\. )", layout)
    for package in sorted(p for p in (ROOT / "hires").iterdir() if (p / "__init__.py").exists()):
        item = next((i for i in items if f"**`{package.name}/`**" in i), None)
        assert item is not None, f"docs/how-it-works.md: no item for hires/{package.name}/"
        for module in sorted(package.glob("*.py")):
            if module.stem != "__init__":
                assert f"`{module.stem}`" in item, f"docs/how-it-works.md: hires/{package.name}/{module.name} not named"


def test_code_and_tests_hold_no_lab_dates_and_cite_only_files_that_exist():
    """History lives in git and docs: no dates, stop or issue numbers in the package, its kernels and
    tests; every ``*.md`` file they cite is in the repository."""
    import re
    dated = re.compile(r"\b20\d\d-\d\d-\d\d\b|\b(first|second|third|fourth|fifth) stop\b|\b[Ii]ssues? \d+")
    cited = re.compile(r"(?<![\w./])((?:docs/|\.\./)?[\w./-]*[A-Za-z_]\.md)\b")
    found, missing = [], []
    for path in sorted([*(ROOT / "hires").rglob("*.py"), *(ROOT / "kernels").glob("*.py"), *(ROOT / "tests").glob("*.py")]):
        if path.name in ("test_layout.py", "test_docs.py"):   # (their own planted cases)
            continue
        text = path.read_text()
        found += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in dated.finditer(text)]
        for m in cited.finditer(text):
            name = m.group(1)
            if not any((base / name).exists() for base in (ROOT, ROOT / "docs", path.parent)):
                missing.append(f"{path.relative_to(ROOT)}: {name}")
    assert found == [] and missing == [], (found, missing)


def test_nothing_outside_the_engine_reaches_into_its_network():
    """The engine's network is its own: other modules ask the engine (``use_level``,
    ``use_precision``), never ``engine.net``."""
    import re
    reach = re.compile(r"\bengine\.net\b")
    found = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "hires").rglob("*.py"))
             if p.name != "engine.py" and reach.search(p.read_text())]
    assert found == []


def test_no_module_is_longer_than_its_one_job():
    assert import_graph.too_long() == {}


def test_the_cycle_finder_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_graph.cycles({"a": {"b"}, "b": set()}) == []


def test_the_script_prints_the_graph():
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "import_graph.py")], capture_output=True, text=True)
    assert "hires.engine.engine:" in r.stdout and "hires.core.layers" in r.stdout
    assert r.returncode == 0 and "import cycle" not in r.stdout, r.stdout


def test_importing_the_kernels_and_building_an_engine_change_no_process_setting():
    """numba's threading layer and glibc's malloc are set where a render starts (hires.core.process),
    not by an import or a constructor."""
    code = ("import numba; before = numba.config.THREADING_LAYER\n"
            "import hires.kernels\n"
            "from hires.engine.engine import Engine\nfrom hires.core.config import Settings\n"
            "import hires.core.canvas as c\ncalls = []\nc._LIBC = type('L', (), {'mallopt': lambda *a: calls.append(a)})()\n"
            "Engine(Settings(network='random'))\n"
            "assert numba.config.THREADING_LAYER == before, numba.config.THREADING_LAYER\n"
            "assert calls == [], calls\n"
            "from hires.core import process\nprocess.tune_for_rendering()\n"
            "assert numba.config.THREADING_LAYER == 'workqueue' and calls\nprint('ok')\n")
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("NUMBA_THREADING_LAYER", "MALLOC_MMAP_THRESHOLD_")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]


def test_the_engine_and_the_dask_runner_both_implement_the_tile_runner_interface():
    import inspect

    from hires.engine.cluster import DaskRunner
    from hires.engine.engine import Engine
    from hires.engine.passes import TileRunner
    for name in ("tile_stats_runs", "refine_runs"):
        want = list(inspect.signature(getattr(TileRunner, name)).parameters)
        for cls in (Engine, DaskRunner):
            assert list(inspect.signature(getattr(cls, name)).parameters) == want, (cls, name)


def test_the_recorded_durations_name_tests_that_exist():
    """The slow marker's source (tests/durations.json) names only tests of the suite."""
    from conftest import recorded_durations
    text = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*.py"))
    names = {nodeid.split("::")[-1].split("[")[0] for nodeid in recorded_durations()}
    assert names and all(f"def {name}(" in text for name in names), [n for n in names if f"def {n}(" not in text]


def outside_settings_assignments(source: str) -> list[str]:
    """Assignments to another object's settings (``engine.s = ...``, ``runner.settings = ...``):
    an object's settings change through its own methods only."""
    import ast
    found = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for t in targets:
            if isinstance(t, ast.Attribute) and t.attr in ("s", "settings") and not (
                    isinstance(t.value, ast.Name) and t.value.id in ("self", "cls")):
                found.append(f"line {node.lineno}: {ast.unparse(t)}")
    return found


def test_no_module_assigns_another_objects_settings():
    found = {p.name: outside_settings_assignments(p.read_text())
             for p in sorted((ROOT / "hires").glob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))}
    assert not {k: v for k, v in found.items() if v}
    assert outside_settings_assignments("engine.s = x\nstate.executor.settings = y\nself.settings = z\n") == [
        "line 1: engine.s", "line 2: state.executor.settings"]


def test_every_long_test_is_listed_with_its_quick_twin():
    """A test measured long leaves ``make test``: tests/twins.py must list it, with its quick twin
    (a test that exists and is not long itself) and the defect planted to see the twin fail, so that
    crossing the line is decided."""
    import re
    from conftest import LONG_SECONDS, recorded_durations
    from twins import ALWAYS_RUN, TWINS
    durations = recorded_durations()
    long = {k.split("[")[0] for k, v in durations.items() if v >= LONG_SECONDS and not k.startswith(ALWAYS_RUN)}
    assert sorted(long - set(TWINS)) == [], "long tests with no entry in tests/twins.py"

    def exists(test: str) -> bool:
        path, name = test.split("::")
        return re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.M) is not None
    assert [t for t in TWINS if not exists(t)] == []
    for test, (twin, planted) in TWINS.items():
        assert exists(twin) and planted, (test, twin)
        took = [v for k, v in durations.items() if k.split("[")[0] == twin]
        assert all(v < LONG_SECONDS for v in took), (twin, took)
