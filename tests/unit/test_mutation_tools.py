"""The mutation report's arithmetic and the re-check's choice of mutants (docs/mutation.md, issue 17).

A full mutation run takes an hour; after it, new tests and small code changes are re-checked instead of running it all
again. These pin that a re-check can only replace a verdict for the very code it was given: a mutant of a function
changed since the run is re-run or counted "not checked", never credited with the old run's verdict.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(directory: Path, exit_codes: dict[str, int | None], hashes: dict[str, str], source: str | None = None) -> Path:
    """A run directory as mutmut 3.8.1 leaves it: mutants/chalicelib/money.py.meta (and the copy it was made on)."""
    meta = directory / "mutants" / "chalicelib" / "money.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": exit_codes, "hash_by_function_name": hashes}), "utf-8")
    if source is not None:
        (directory / "chalicelib").mkdir()
        (directory / "chalicelib" / "money.py").write_text(source, "utf-8")
    return directory


def test_a_recheck_replaces_verdicts_and_never_credits_a_changed_function_with_the_runs(tmp_path: Path) -> None:
    report = _script("mutation_report")
    m = "chalicelib.money."
    run = _run(tmp_path / "run", {
        m + "x_add__mutmut_1": 1,      # killed
        m + "x_add__mutmut_2": 0,      # survived: re-checked below and killed by a new test
        m + "x_fmt__mutmut_1": 1,      # killed, but fmt changed since: its verdict no longer counts
        m + "x_gone__mutmut_1": 0,     # a deleted function's survivor: no longer a mutant of the code
    }, {"x_add": "a1", "x_fmt": "f1", "x_gone": "g1"})
    recheck = _run(tmp_path / "recheck", {
        m + "x_add__mutmut_1": None,   # not re-run: the run's verdict for the same source stands
        m + "x_add__mutmut_2": 1,
        m + "x_fmt__mutmut_1": None,   # not re-run and fmt's source differs: not checked
        m + "x_new__mutmut_1": 0,      # a new function's survivor
    }, {"x_add": "a1", "x_fmt": "f2", "x_new": "n1"})

    assert report._results([run], [recheck]) == {
        m + "x_add__mutmut_1": "killed",
        m + "x_add__mutmut_2": "killed",
        m + "x_fmt__mutmut_1": "not checked",
        m + "x_new__mutmut_1": "survived",
    }
    counts, survivors, _ = report._tally(set(), [run], [recheck])
    assert counts["chalicelib.money"] == {"killed": 2, "not checked": 1, "survived": 1}
    assert survivors["chalicelib.money"] == [m + "x_fmt__mutmut_1 (not checked)", m + "x_new__mutmut_1 (survived)"]


def test_the_recheck_picks_survivors_uncovered_and_every_mutant_of_a_changed_function(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recheck = _script("mutation_recheck")
    m = "chalicelib.money."
    before = "def add(a, b):\n    return a + b\n\n\ndef fmt(x):\n    return str(x)\n\n\ndef same(x):\n    return x\n"
    now = "def add(a, b):\n    return a + b\n\n\ndef fmt(x):\n    return f'{x}'\n\n\ndef same(x):\n    return x\n"
    run = _run(tmp_path / "run", {
        m + "x_add__mutmut_1": 1, m + "x_add__mutmut_2": 0, m + "x_fmt__mutmut_1": 1, m + "x_same__mutmut_1": 33,
        m + "x_same__mutmut_2": 0,
    }, {}, source=before)
    work = tmp_path / "work"
    (work / "chalicelib").mkdir(parents=True)
    (work / "chalicelib" / "money.py").write_text(now, "utf-8")
    listed = tmp_path / "unobservable.txt"
    listed.write_text(m + "x_same__mutmut_2  # why\n", "utf-8")
    monkeypatch.chdir(work)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert recheck.main([str(run), str(listed)]) == 0
    assert out.getvalue().split() == [m + "x_fmt__mutmut_*", m + "x_add__mutmut_2", m + "x_same__mutmut_1"]
