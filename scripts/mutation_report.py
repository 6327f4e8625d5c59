"""Print the mutation score per module and each surviving mutant, from mutmut's results (docs/mutation.md).

``--min-score PERCENT`` makes the exit status 1 when any module scores below it (scripts/mutation_sample.sh).
Score = killed / (killed + survived − not observable); a timeout counts as killed (the mutant made a test hang, so it
was noticed); mutants with no covering test are counted apart (``no tests``) and also fail the threshold.
``--unobservable FILE`` lists survivors that no test can tell from the original (one ``NAME  # why`` a line; the
reasons are in docs/mutation.md); a listed mutant that a test now kills is reported as a stale entry.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

_KILLED = ("killed", "timeout")


def _read_unobservable(path: Path | None) -> set[str]:
    """The mutant names listed (one per line, ``#`` comments) as not observable by any test."""
    names: set[str] = set()
    if path is not None and path.exists():
        for line in path.read_text("utf-8").splitlines():
            name = line.split("#", 1)[0].strip()
            if name:
                names.add(name)
    return names


def _results(directories: list[Path]) -> str:
    """``mutmut results --all true`` of each directory a run was made in (the current one by default)."""
    return "\n".join(
        subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True, text=True,
                       check=True, cwd=directory).stdout
        for directory in directories or [Path.cwd()]
    )


def _tally(unobservable: set[str], directories: list[Path]) -> tuple[dict[str, Counter[str]], dict[str, list[str]],
                                                                      list[str]]:
    """mutmut's results per module: status counts, the mutants not killed, and listed names that were killed."""
    out = _results(directories)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    stale: list[str] = []
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" not in name:
            continue
        # chalicelib.trading.risk.x_size_position__mutmut_3 -> chalicelib.trading.risk
        module = ".".join(part for part in name.split(".") if not part.startswith(("x_", "xǁ")))
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
    args = parser.parse_args(argv)
    counts, survivors, stale = _tally(_read_unobservable(args.unobservable), args.results)
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
        if args.min_score is not None and (score < args.min_score or untested):
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
