#!/usr/bin/env bash
# Mutation testing of the money core with mutmut 3 (configuration: [tool.mutmut] in pyproject.toml), then the score
# per module and each survivor. A full run takes minutes on two cores (docs/mutation.md); extra arguments go to
# `mutmut run` (e.g. a glob of mutant names to run a sample).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/python -m pip install -q --disable-pip-version-check 'mutmut==3.8.1'
rm -rf mutants
started=$(date +%s)
.venv/bin/mutmut run "$@" | tr '\r' '\n' | tail -n 2
echo "mutmut run took $(( ($(date +%s) - started) / 60 )) min $(( ($(date +%s) - started) % 60 )) s"
.venv/bin/python scripts/mutation_report.py
