"""The mutants to re-check after a profile's full run (docs/mutation.md, ``scripts/mutation_recheck.sh``).

Prints, one a line, the mutant names (or ``fnmatch`` globs, as ``mutmut run`` takes them) whose verdict the run in
``RUN_DIR`` cannot vouch for today: every mutant that survived it or had no covering test (new tests may kill or
cover it), except those listed as not observable in functions that did not change; and every mutant of a function
whose source differs between the copy the run was made on (``RUN_DIR/chalicelib``) and the code now (or that is new).
A mutant of an unchanged function that the run killed stays killed: tests were only added.

    python scripts/mutation_recheck.py RUN_DIR UNOBSERVABLE_FILE
    python scripts/mutation_recheck.py --survivors SOURCE[,SOURCE…] RUN_DIR [RECHECK_DIR]

``--survivors`` prints instead the mutants of the SOURCEs (``chalicelib/ledger/store.py,chalicelib/verify.py``) that
survived the run (and its re-check, as ``mutation_report.py`` counts them), except those listed as not observable:
what the ``postgres`` profile runs.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path


def functions(path: Path) -> dict[str, str]:
    """mutmut's name for each function and method of a module (``x_name``, ``xǁClassǁname``) → its source."""
    if not path.exists():
        return {}
    text = path.read_text("utf-8")
    out: dict[str, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            out[f"x_{node.name}"] = ast.get_source_segment(text, node) or ""
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    out[f"xǁ{node.name}ǁ{item.name}"] = ast.get_source_segment(text, item) or ""
    return out


def survivors(sources: str, run: Path, recheck: Path | None) -> list[str]:
    spec = importlib.util.spec_from_file_location("mutation_report", Path(__file__).with_name("mutation_report.py"))
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    modules = {".".join(Path(source).with_suffix("").parts) for source in sources.split(",")}
    found = report._results([run], [recheck] if recheck is not None else [])
    listed = report._read_unobservable(Path(__file__).with_name("mutation_unobservable.txt"))
    return sorted(name for name, status in found.items()
                  if report._module(name) in modules and status == "survived" and name not in listed)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--survivors"] and len(argv) in (3, 4):
        names = survivors(argv[1], Path(argv[2]), Path(argv[3]) if len(argv) == 4 else None)
        sys.stdout.write("".join(f"{name}\n" for name in names))
        return 0
    if len(argv) != 2:
        sys.stderr.write("usage: mutation_recheck.py RUN_DIR UNOBSERVABLE_FILE\n")
        return 2
    run, listed_file = Path(argv[0]), Path(argv[1])
    listed = {line.split("#", 1)[0].strip() for line in listed_file.read_text("utf-8").splitlines()}
    names: list[str] = []
    for meta in sorted((run / "mutants").rglob("*.py.meta")):
        source = meta.relative_to(run / "mutants").with_suffix("")  # chalicelib/verify.py
        module = ".".join(source.with_suffix("").parts)
        before, now = functions(run / source), functions(Path(source))
        changed = {name for name in now if before.get(name) != now[name]}
        names.extend(f"{module}.{name}__mutmut_*" for name in sorted(changed))
        for name, exit_code in json.loads(meta.read_text("utf-8"))["exit_code_by_key"].items():
            function = name.rpartition("__mutmut_")[0].rpartition(".")[2]
            if function in now and function not in changed and exit_code in (0, 5, 33, None) and name not in listed:
                names.append(name)
    sys.stdout.write("".join(f"{name}\n" for name in names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
