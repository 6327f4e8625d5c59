"""Print the mutation score per module and each surviving mutant, from mutmut's results (docs/mutation.md)."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, defaultdict


def main() -> int:
    out = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], capture_output=True,
                         text=True, check=True).stdout
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    survivors: dict[str, list[str]] = defaultdict(list)
    for line in out.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if "__mutmut_" not in name:
            continue
        # chalicelib.trading.risk.x_size_position__mutmut_3 -> chalicelib.trading.risk
        module = ".".join(part for part in name.split(".") if not part.startswith("x"))
        counts[module][status] += 1
        if status == "survived":
            survivors[module].append(name)
    print(f"{'module':<32} {'mutants':>8} {'killed':>7} {'survived':>9} {'other':>6} {'score':>7}")
    for module, c in sorted(counts.items()):
        killed, survived = c["killed"], c["survived"]
        other = sum(c.values()) - killed - survived
        score = killed / (killed + survived) * 100 if killed + survived else 100.0
        print(f"{module:<32} {sum(c.values()):>8} {killed:>7} {survived:>9} {other:>6} {score:>6.1f}%")
    for module, names in sorted(survivors.items()):
        print(f"\nsurvivors in {module} ({len(names)}): `mutmut show NAME` prints each diff")
        for name in names:
            print(f"  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
