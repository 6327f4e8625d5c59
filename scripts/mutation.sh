#!/usr/bin/env bash
# Mutation testing of the money core with mutmut 3 (configuration: [tool.mutmut] in pyproject.toml), then the score
# per module and each survivor (docs/mutation.md).
#   bash scripts/mutation.sh [mutmut run args]          every money module against the full SQLite selection
#   bash scripts/mutation.sh pure|store [mutmut args]   one fast profile ([tool.mutmut.atb_profiles]) in a scratch
#                                                       copy (.mutation/PROFILE), its modules against its tests only
# Extra arguments go to `mutmut run` (e.g. `--max-children 1`, or globs of mutant names to run a sample). With
# MUTATION_MIN_SCORE=PERCENT the exit status is 1 when a module scores below it (scripts/mutation_sample.sh).
#   bash scripts/mutation.sh all [mutmut args]          the full run: every profile in turn (pure, store, wallet:
#                                                       every money module once; then postgres: store's survivors
#                                                       against the PostgreSQL-only tests), then one report
#   bash scripts/mutation_recheck.sh all|PROFILE        after new tests or code: re-check what a run cannot vouch for
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
.venv/bin/python -m pip install -q --disable-pip-version-check 'mutmut==3.8.1'
if [[ "${1:-}" == all ]]; then
    shift
    started=$(date +%s)
    rm -rf "$root"/.mutation/*-recheck  # re-checks of an earlier run
    for profile in pure store wallet; do
        echo "== profile $profile ($(date -u +%H:%M:%S) UTC)"
        MUTATION_REPORT=no bash "$0" "$profile" "$@"
    done
    # What survives of the store profile on SQLite, against the PostgreSQL-only tests (the postgres profile).
    mapfile -t names < <(.venv/bin/python scripts/mutation_recheck.py --survivors chalicelib/ledger/store.py,chalicelib/verify.py \
                             "$root/.mutation/store")
    echo "== profile postgres: ${#names[@]} survivors of ledger/store.py and verify.py ($(date -u +%H:%M:%S) UTC)"
    also=()
    if [[ ${#names[@]} -gt 0 ]]; then
        MUTATION_REPORT=no bash "$0" postgres "$@" "${names[@]}"
        also=(--also "$root/.mutation/postgres")
    fi
    echo "the full run took $(( ($(date +%s) - started) / 60 )) min $(( ($(date +%s) - started) % 60 )) s" \
         "(load: $(cut -d' ' -f1-3 /proc/loadavg))"
    exec "$root/.venv/bin/python" "$root/scripts/mutation_report.py" \
        --unobservable "$root/scripts/mutation_unobservable.txt" ${MUTATION_MIN_SCORE:+--min-score "$MUTATION_MIN_SCORE"} \
        --results "$root/.mutation/pure" --results "$root/.mutation/store" --results "$root/.mutation/wallet" "${also[@]}"
fi
if [[ $# -gt 0 && "$1" != -* && "$1" != *.* && "$1" != *'*'* ]]; then
    profile="$1"; shift
    work="$root/.mutation/${MUTATION_DIR:-$profile}"
    rm -rf "$work" && mkdir -p "$work"
    cp -r chalicelib tests scripts app.py migrations bench infra .chalice lab sim README.md "$work/"
    .venv/bin/python scripts/mutation_profile.py "$profile" pyproject.toml "$work/pyproject.toml"
    cd "$work"
fi
rm -rf mutants
started=$(date +%s)
"$root/.venv/bin/mutmut" run "$@" | tr '\r' '\n' | tail -n 2
echo "mutmut run took $(( ($(date +%s) - started) / 60 )) min $(( ($(date +%s) - started) % 60 )) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
[[ "${MUTATION_REPORT:-yes}" == no ]] && exit 0
"$root/.venv/bin/python" "$root/scripts/mutation_report.py" \
    --unobservable "$root/scripts/mutation_unobservable.txt" ${MUTATION_MIN_SCORE:+--min-score "$MUTATION_MIN_SCORE"}
