#!/usr/bin/env bash
# The bounded mutation sample for CI (docs/mutation.md): every mutant of the pure money modules (money.py,
# accounting.py, trading/broker.py, trading/risk.py, valuation.py, trading/markets.py) against the unit tests, on one
# core; fails when a module scores below MUTATION_MIN_SCORE (default 95 %, killed / observable) or a mutant has no
# covering test. A few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
MUTATION_MIN_SCORE="${MUTATION_MIN_SCORE:-95}" exec bash scripts/mutation.sh sample --max-children 1
