"""Print the mutation score per module and each surviving mutant, from mutmut's results (docs/mutation.md).

``--min-score PERCENT`` makes the exit status 1 when any module scores below it (scripts/mutation_sample.sh).
Score = killed / (killed + survived − not observable); a timeout counts as killed (the mutant made a test hang, so it
was noticed); mutants with no covering test are counted apart (``no tests``) and also fail the threshold, as does a
mutant not checked.
``--unobservable FILE`` lists survivors that no test can tell from the original (one ``NAME  # why`` a line; the
reasons are in docs/mutation.md); a listed mutant that a test now kills is reported as a stale entry.
``--results DIR`` (repeatable) reads the run made in DIR (a profile's ``.mutation/PROFILE``); ``--recheck DIR`` reads a
re-check of such a run against newer code and tests (``scripts/mutation_recheck.sh``): for the modules it mutated, its
mutants are the ones counted (what the code is now), each with the re-check's verdict, or else the run's verdict when
the run tested the same mutant of the same function source; a mutant of a function that changed since the run and
was not re-checked is counted "not checked", so a stale verdict never passes for a current one. ``--also DIR`` reads
a run of the survivors against another selection (the ``postgres`` profile: ledger/store.py and verify.py against the
PostgreSQL-only tests): a survivor it killed, on the same function source, counts as killed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

_KILLED = ("killed", "timeout")
#: mutmut 3.8.1's verdict for each exit code a mutant's test run ended with (``mutmut.__main__.status_by_exit_code``;
#: scripts/mutation.sh pins the version).
_STATUS_BY_EXIT_CODE: dict[int | None, str] = {
    None: "not checked", 0: "survived", 1: "killed", 3: "killed", 2: "check was interrupted by user",
    5: "no tests", 33: "no tests", 34: "skipped", 35: "suspicious", 36: "timeout", 24: "timeout", -24: "timeout",
    152: "timeout", 255: "timeout", 37: "caught by type check", -11: "segfault", -9: "segfault",
}


def _read_unobservable(path: Path | None) -> set[str]:
    """The mutant names listed (one per line, ``#`` comments) as not observable by any test."""
    names: set[str] = set()
    if path is not None and path.exists():
        for line in path.read_text("utf-8").splitlines():
            name = line.split("#", 1)[0].strip()
            if name:
                names.add(name)
    return names


def _run(directory: Path) -> dict[str, tuple[str, str | None]]:
    """Each mutant of a run (mutmut's ``mutants/**/*.meta``): its status and the hash of its function's source."""
    out: dict[str, tuple[str, str | None]] = {}
    for meta in sorted((directory / "mutants").rglob("*.meta")):
        data = json.loads(meta.read_text("utf-8"))
        hashes = data.get("hash_by_function_name", {})
        for name, exit_code in data.get("exit_code_by_key", {}).items():
            function = name.rpartition("__mutmut_")[0].rpartition(".")[2]
            out[name] = (_STATUS_BY_EXIT_CODE.get(exit_code, f"exit code {exit_code}"), hashes.get(function))
    return out


def _module(name: str) -> str:
    # chalicelib.trading.risk.x_size_position__mutmut_3 -> chalicelib.trading.risk
    return ".".join(part for part in name.split(".") if not part.startswith(("x_", "xǁ")))


def _results(runs: list[Path], rechecks: list[Path], also: Sequence[Path] = ()) -> dict[str, str]:
    """Each mutant's status: the runs' verdicts, replaced module by module by the re-checks' (see the docstring); then
    a survivor that another selection (``also``: the PostgreSQL-only tests) killed, on the same function source,
    is killed."""
    earlier = {name: found for run in runs or [Path.cwd()] for name, found in _run(run).items()}
    found_by_name = dict(earlier)
    for recheck in rechecks:
        now = _run(recheck)
        modules = {_module(name) for name in now}
        found_by_name = {name: found for name, found in found_by_name.items() if _module(name) not in modules}
        for name, (verdict, function_hash) in now.items():
            # Not re-run: the run's verdict stands if it tested this very mutant of this very source.
            same = verdict == "not checked" and name in earlier and earlier[name][1] == function_hash
            found_by_name[name] = (earlier[name][0] if same else verdict, function_hash)
    for other in also:
        for name, (verdict, function_hash) in _run(other).items():
            if verdict in _KILLED and found_by_name.get(name) == ("survived", function_hash):
                found_by_name[name] = (verdict, function_hash)
    return {name: verdict for name, (verdict, _) in found_by_name.items()}


def _tally(unobservable: set[str], runs: list[Path], rechecks: list[Path],
           also: Sequence[Path] = ()) -> tuple[dict[str, Counter[str]], dict[str, list[str]], list[str]]:
    """mutmut's results per module: status counts, the mutants not killed, and listed names that were killed."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    stale: list[str] = []
    for name, verdict in sorted(_results(runs, rechecks, also).items()):
        module, status = _module(name), verdict
        if name in unobservable:
            if status == "survived":
                status = "not observable"
            elif status in _KILLED:
                stale.append(name)
        counts[module][status] += 1
        if status not in (*_KILLED, "not observable"):
            survivors[module].append(f"{name} ({status})")
    return counts, survivors, stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--min-score", type=float, default=None, help="fail when a module scores below PERCENT")
    parser.add_argument("--unobservable", type=Path, default=None, help="survivors no test can observe")
    parser.add_argument("--results", type=Path, action="append", default=[], metavar="DIR",
                        help="a directory a run was made in (repeatable; default: the current one)")
    parser.add_argument("--recheck", type=Path, action="append", default=[], metavar="DIR",
                        help="a re-check of those runs against newer code and tests (repeatable)")
    parser.add_argument("--also", type=Path, action="append", default=[], metavar="DIR",
                        help="a run of the survivors against another selection (the postgres profile): its kills count")
    args = parser.parse_args(argv)
    counts, survivors, stale = _tally(_read_unobservable(args.unobservable), args.results, args.recheck, args.also)
    if not counts:
        print("no mutants in mutmut's results", file=sys.stderr)
        return 1
    print(f"{'module':<32} {'mutants':>8} {'killed':>7} {'survived':>9} {'not obs.':>9} {'no tests':>9} {'other':>6} "
          f"{'score':>7}")
    low: list[str] = []
    total: Counter[str] = Counter()
    for module, c in sorted(counts.items()):
        total.update(c)
        killed, survived, untested = sum(c[s] for s in _KILLED), c["survived"], c["no tests"]
        other = sum(c.values()) - killed - survived - untested - c["not observable"]
        score = killed / (killed + survived) * 100 if killed + survived else 100.0
        print(f"{module:<32} {sum(c.values()):>8} {killed:>7} {survived:>9} {c['not observable']:>9} {untested:>9} "
              f"{other:>6} {score:>6.1f}%")
        if args.min_score is not None and (score < args.min_score or untested or c["not checked"]):
            low.append(module)
    killed, survived = sum(total[s] for s in _KILLED), total["survived"]
    print(f"{'all':<32} {sum(total.values()):>8} {killed:>7} {survived:>9} {total['not observable']:>9} "
          f"{total['no tests']:>9} {'':>6} {killed / max(killed + survived, 1) * 100:>6.1f}%")
    for module, names in sorted(survivors.items()):
        print(f"\nnot killed in {module} ({len(names)}): `mutmut show NAME` prints each diff")
        for name in names:
            print(f"  {name}")
    if stale:
        print(f"\nlisted as not observable but killed (remove from the list): {', '.join(stale)}")
    if low:
        print(f"\nbelow {args.min_score}% (or a mutant no test covers): {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
