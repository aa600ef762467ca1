"""The README and docs name only files that exist, and link only to pages that exist."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TOP = ("hires/", "kernels/", "tests/", "benchmarks/", "configs/", "docs/", ".ci/")
MADE = "benchmarks/images/"  # what benchmarks write, outside the repository's tree


def named_paths(text: str) -> set[str]:
    """Repository paths in backticks (``hires/core/io.py``, ``benchmarks/results/gallery/compare_*.jpg``),
    up to the first space; placeholders (NAME, N, …) are not paths."""
    out = set()
    for span in re.findall(r"`([^`\n]+)`", text):
        first = span.split()[0].split("::")[0].rstrip(".,:;)")
        if first.startswith(TOP) and not first.startswith(MADE) and not re.search(r"[A-Z]{3,}|…|<|\{", first):
            out.add(first)
    return out


def links(text: str) -> set[str]:
    return {m for m in re.findall(r"\]\(([^)#\s]+)\)", text) if not m.startswith(("http:", "https:"))}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_path_a_page_names_exists(page):
    text = page.read_text()
    missing = [p for p in sorted(named_paths(text)) if not list(ROOT.glob(p.rstrip("/")))]
    missing += [f"link {m}" for m in sorted(links(text)) if not (page.parent / m).exists()]
    assert not missing, missing


def test_the_checks_see_a_missing_path_and_a_missing_link(tmp_path):
    text = "see `hires/no_such_module.py` and [here](nowhere.md), and `hires/core/io.py`"
    assert named_paths(text) == {"hires/no_such_module.py", "hires/core/io.py"}
    assert named_paths("see `benchmarks/images/grid_*.png`") == set()
    assert links(text) == {"nowhere.md"}


def test_the_readme_stays_a_few_screens():
    assert len((ROOT / "README.md").read_bytes()) < 12 * 1024
