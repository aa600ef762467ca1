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


def test_the_cycle_finder_finds_a_cycle():
    assert import_graph.cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert import_graph.cycles({"a": {"b"}, "b": set()}) == []


def test_the_script_prints_the_graph():
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "import_graph.py")], capture_output=True, text=True)
    assert "hires.engine:" in r.stdout and "hires.layers" in r.stdout
    assert r.returncode == 0 and "import cycle" not in r.stdout, r.stdout
