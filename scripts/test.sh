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

# The dashboard test drives a real headless browser: Debian's chromium (Playwright never downloads its own).
if ! command -v chromium >/dev/null 2>&1 && [ -z "${ATB_CHROMIUM:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing chromium (apt) for the dashboard browser test"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
  else
    echo "note: no chromium found; the browser test will fail until you install it (apt-get install chromium)" \
         "or point ATB_CHROMIUM at a Chromium binary" >&2
  fi
fi

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== deploy checks (cfn-lint, precompiled package for dev+prod, cfn-lint on the packaged templates)"
bash scripts/check_deploy.sh
echo "== mutation sample (the pure money modules' mutants against the unit tests; docs/mutation.md)"
bash scripts/mutation_sample.sh
echo "== pytest"
exec .venv/bin/pytest -n "${PYTEST_WORKERS:-2}" "$@"
