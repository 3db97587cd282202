#!/usr/bin/env bash
# Dispatch throughput of an earlier commit and of the work tree, interleaved in one session.
#
#   bash bench/ab_dispatch.sh BASE_REF [ROUNDS] [-- ARGS for bench/dispatch.py]
#   bash bench/ab_dispatch.sh origin/main 2 -- --setups pg1,pg2,sqlite --tasks 3000 --concurrency 32
#
# This VM's speed drifts up to 2x within minutes (DESIGN.md), so a change is compared with its
# base only side by side: each round runs bench/dispatch.py --only throughput from a temporary
# worktree of BASE_REF and from this tree, alternating which goes first. Both use this tree's
# .venv and the same scripts/pg-cluster. Each run's "Best drain rate" table and CPU notes are
# printed as they come; the full output of every run is kept in the log directory it names.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
BASE_REF=${1:?usage: bench/ab_dispatch.sh BASE_REF [ROUNDS] [-- ARGS]}
shift
ROUNDS=2
if [[ $# -gt 0 && $1 != "--" ]]; then
    ROUNDS=$1
    shift
fi
[[ ${1:-} == "--" ]] && shift
ARGS=("$@")
[[ ${#ARGS[@]} -gt 0 ]] || ARGS=(--setups pg1,pg2,sqlite --tasks 3000 --concurrency 32)

LOGS=$(mktemp -d /tmp/agency-ab.XXXXXX)
BASE_TREE=$LOGS/base
git worktree add --detach "$BASE_TREE" "$BASE_REF" >/dev/null
trap 'git worktree remove --force "$BASE_TREE" >/dev/null 2>&1 || true' EXIT
echo "base $(git -C "$BASE_TREE" rev-parse --short HEAD) ($BASE_REF) vs this tree $(git rev-parse --short HEAD)+changes; logs in $LOGS"

run() { # $1 = label, $2 = tree, $3 = round
    local log=$LOGS/$1-$3.log
    echo "== round $3: $1"
    (cd "$2" && "$ROOT/.venv/bin/python" bench/dispatch.py --only throughput "${ARGS[@]}") >"$log" 2>"$log.err" ||
        { echo "   failed (see $log.err)"; return 0; }
    awk '/^End-to-end throughput/{p=1} p{print "   " $0} /^  drain = /{p=0}' "$log"
}
for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then
        run base "$BASE_TREE" "$round"
        run head "$ROOT" "$round"
    else
        run head "$ROOT" "$round"
        run base "$BASE_TREE" "$round"
    fi
done
