#!/usr/bin/env bash
# Offline deploy checks (issue 5): cfn-lint on the infra templates, `chalice package` for each stage, and
# cfn-lint on every generated SAM template. AWS is never contacted. Usage: scripts/check_deploy.sh [stage ...]
# (default: dev prod).
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
  echo "== chalice package --stage $stage"
  "$BIN/chalice" package --stage "$stage" "$OUT/$stage" >/dev/null
  echo "== cfn-lint packaged $stage template ($(du -h "$OUT/$stage/deployment.zip" | cut -f1) zip)"
  "$BIN/cfn-lint" "$OUT/$stage/sam.json"
done
echo "deploy checks passed: ${STAGES[*]}"
