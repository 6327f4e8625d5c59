#!/usr/bin/env bash
# Re-check a full run against the code and tests as they are now (docs/mutation.md), without running it all again:
# every survivor, every mutant without a covering test, and every mutant of a function changed since the run
# (scripts/mutation_recheck.py picks them), in a fresh copy (.mutation/PROFILE-recheck); then one report where the
# re-check's verdicts replace the run's.
#   bash scripts/mutation_recheck.sh all [mutmut run args]       the profiles of `bash scripts/mutation.sh all`
#   bash scripts/mutation_recheck.sh PROFILE [mutmut run args]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
[[ $# -gt 0 ]] || { echo "usage: bash scripts/mutation_recheck.sh all|PROFILE [mutmut run args]" >&2; exit 2; }
which="$1"; shift
profiles=("$which"); [[ "$which" == all ]] && profiles=(pure store wallet)
report=()
started=$(date +%s)
for profile in "${profiles[@]}"; do
    run="$root/.mutation/$profile"
    if [[ ! -d "$run/mutants" ]]; then
        echo "no run of profile $profile in $run: run bash scripts/mutation.sh $profile first" >&2; exit 2
    fi
    report+=(--results "$run")
    rm -rf "$root/.mutation/$profile-recheck"
    mapfile -t names < <(.venv/bin/python scripts/mutation_recheck.py "$run" scripts/mutation_unobservable.txt)
    echo "== profile $profile: ${#names[@]} mutants or changed functions to re-check ($(date -u +%H:%M:%S) UTC)"
    if [[ ${#names[@]} -gt 0 ]]; then
        MUTATION_REPORT=no MUTATION_DIR="$profile-recheck" bash scripts/mutation.sh "$profile" "$@" "${names[@]}"
        report+=(--recheck "$root/.mutation/$profile-recheck")
    fi
done
if [[ "$which" == all || "$which" == store ]]; then
    # What survives of the store profile on SQLite, against the PostgreSQL-only tests (the postgres profile).
    recheck=(); [[ -d "$root/.mutation/store-recheck/mutants" ]] && recheck=("$root/.mutation/store-recheck")
    mapfile -t names < <(.venv/bin/python scripts/mutation_recheck.py \
                             --survivors chalicelib/ledger/store.py,chalicelib/verify.py "$root/.mutation/store" "${recheck[@]}")
    echo "== profile postgres: ${#names[@]} survivors of ledger/store.py and verify.py ($(date -u +%H:%M:%S) UTC)"
    if [[ ${#names[@]} -gt 0 ]]; then
        MUTATION_REPORT=no bash scripts/mutation.sh postgres "$@" "${names[@]}"
        report+=(--also "$root/.mutation/postgres")
    fi
fi
echo "the re-check took $(( ($(date +%s) - started) / 60 )) min $(( ($(date +%s) - started) % 60 )) s" \
     "(load: $(cut -d' ' -f1-3 /proc/loadavg))"
exec .venv/bin/python scripts/mutation_report.py --unobservable scripts/mutation_unobservable.txt \
    ${MUTATION_MIN_SCORE:+--min-score "$MUTATION_MIN_SCORE"} "${report[@]}"
