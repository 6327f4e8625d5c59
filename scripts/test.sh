#!/usr/bin/env bash
# Install the project with its test tools and run every check: ruff, mypy, infra validation, pytest
# (each persistence test on SQLite and on real PostgreSQL — found or started by the test harness itself).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check 'pip<26.3'
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]'

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== deploy checks (cfn-lint, precompiled package for dev+prod, cfn-lint on the packaged templates)"
bash scripts/check_deploy.sh
echo "== pytest"
exec .venv/bin/pytest -n "${PYTEST_WORKERS:-2}" "$@"
