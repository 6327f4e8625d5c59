"""The README's "Promises → tests" table names test files that exist, and every test file is in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_every_test_file_holds_a_promise_in_the_readme_table() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme.split("## Promises → tests", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| promise")]
    assert len(rows) >= 11
    named: set[Path] = set()
    for cell in re.findall(r"`([^`]+)`", table):
        if cell.endswith("/"):
            named |= set((ROOT / cell).rglob("test_*.py"))
        elif cell.endswith(".py"):
            found = [ROOT / cell] if "/" in cell else list((ROOT / "tests").rglob(cell))
            assert found and all(p.is_file() for p in found), cell
            named |= set(found)
    every = set((ROOT / "tests").rglob("test_*.py"))
    assert every - named == set(), sorted(str(p.relative_to(ROOT)) for p in every - named)
