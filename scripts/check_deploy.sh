#!/usr/bin/env bash
# Offline deploy checks (issues 5, 14): cfn-lint on the infra templates, scripts/package.py for each stage
# (`chalice package` merged with infra/app-resources.json + bytecode in deployment.zip, the recommended deploy
# path), and cfn-lint on every generated
# SAM template. AWS is never contacted. Usage: scripts/check_deploy.sh [stage ...] (default: dev prod).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${VENV_BIN:-.venv/bin}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
STAGES=("$@")
[ ${#STAGES[@]} -gt 0 ] || STAGES=(dev prod)

echo "== cfn-lint infra/*.yaml"
"$BIN/cfn-lint" infra/*.yaml

OUT=$(mktemp -d "${TMPDIR:-/tmp}/atb-package.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
for stage in "${STAGES[@]}"; do
  echo "== scripts/package.py --stage $stage (chalice package + bytecode)"
  "$BIN/python" scripts/package.py --stage "$stage" "$OUT/$stage"
  echo "== cfn-lint packaged $stage template ($(du -h "$OUT/$stage/deployment.zip" | cut -f1) zip)"
  "$BIN/cfn-lint" "$OUT/$stage/sam.json"
done
echo "deploy checks passed: ${STAGES[*]}"
