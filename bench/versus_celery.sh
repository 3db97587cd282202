#!/usr/bin/env bash
# Dispatch throughput of this tree against the Celery 5 + Redis baseline, interleaved in one session.
#
#   bash bench/versus_celery.sh [--rounds 2] [--tasks 3000] [--concurrency 32]
#        [--setups pg1,pg2,sqlite,serve] [--mode fair|both] [--producer task_create|api|api-bulk]
#        [--batch 100] [--payload celery|echo] [--pg durable|test] [--pools threads,prefork]
#        [--quiet-wait 120]
#
# This VM's speed drifts up to 2x within minutes (DESIGN.md), so a figure means something only next
# to a Celery figure of the same session. Each round runs, in turn (which goes first alternates
# from round to round, so that a drift hits both alike):
#
#   - the baseline: bash ../shared/bench/celery/run.sh --only throughput --runs 1 --n TASKS
#     --concurrency C --pools threads,prefork (a fresh Celery worker per pool, its own PostgreSQL 15
#     with stock durability, Redis and aiohttp worker service, all stopped when it ends);
#   - ours: bench/dispatch.py --only throughput --mode fair --tasks TASKS --concurrency C
#     --setups pg1,pg2,sqlite,serve --payload celery --pg durable --json-out FILE (a producer process
#     calls task_create once a task while the dispatchers run; see that script's docstring for
#     how its figures match the baseline's and where they differ).
#
# Then it prints one table: each setup's tasks/s in every round with its ratio to the better Celery
# pool of the same round, and CPU ms a task of the dispatcher (Celery: its worker's processes) and of
# all processes together (median over the rounds). Figures are read from the tools' own JSON
# (the baseline's latest.json, dispatch.py's --json-out), never scraped from text. Every run is
# bounded in time (timeout(1), TERM then KILL) and each tool stops every process it started; the
# logs and JSON stay in the directory named at the start, with the table as summary.md.
#
# --concurrency is per process: Celery threads = 1 process of C threads, prefork = C processes,
# ours = C attempt slots per dispatch process (pg2: 2 processes, 2 x C slots).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
CELERY_DIR=${CELERY_DIR:-$ROOT/../shared/bench/celery}
PY=$ROOT/.venv/bin/python

ROUNDS=2 TASKS=3000 CONC=32 SETUPS=pg1,pg2,sqlite,serve MODE=fair PRODUCER=task_create BATCH=100
PAYLOAD=celery PG=durable POOLS=threads,prefork QUIET=120
usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
while [[ $# -gt 0 ]]; do
    [[ $# -ge 2 ]] || usage
    case $1 in
    --rounds) ROUNDS=$2 ;;
    --tasks) TASKS=$2 ;;
    --concurrency) CONC=$2 ;;
    --setups) SETUPS=$2 ;;
    --mode) MODE=$2 ;;
    --producer) PRODUCER=$2 ;;
    --batch) BATCH=$2 ;;
    --payload) PAYLOAD=$2 ;;
    --pg) PG=$2 ;;
    --pools) POOLS=$2 ;;
    --quiet-wait) QUIET=$2 ;;
    *) usage ;;
    esac
    shift 2
done
[[ $MODE == fair || $MODE == both ]] || { echo "--mode: fair or both" >&2; exit 2; }
[[ -x $CELERY_DIR/run.sh || -f $CELERY_DIR/run.sh ]] || { echo "no $CELERY_DIR/run.sh" >&2; exit 2; }

LOGS=$(mktemp -d /tmp/agency-vs-celery.XXXXXX)
NSETUPS=$(tr ',' '\n' <<<"$SETUPS" | grep -c .)
NMODES=1
[[ $MODE == both ]] && NMODES=2
NPOOLS=$(tr ',' '\n' <<<"$POOLS" | grep -c .)
# Generous bounds: ~20 tasks/s at worst, plus set-up, warm-up and the wait for a quiet machine.
CELERY_LIMIT=$((NPOOLS * (120 + TASKS / 20) + 120))
OURS_LIMIT=$((NSETUPS * NMODES * (QUIET + 180 + TASKS / 20) + 180))

echo "versus Celery: $ROUNDS round(s), $TASKS tasks, --concurrency $CONC; ours: --setups $SETUPS --mode $MODE" \
    "--producer $PRODUCER --payload $PAYLOAD --pg $PG; Celery pools $POOLS; this tree $(git rev-parse --short HEAD)" \
    "$(git diff --quiet HEAD -- . 2>/dev/null || echo '+changes'); logs in $LOGS"

quiet() { # the baseline does not wait for a quiet machine itself (dispatch.py does, before each run)
    ((QUIET > 0)) || return 0
    "$PY" -c 'import sys; sys.path.insert(0, "bench"); import _common as c; c.wait_for_quiet(max_wait_s=float(sys.argv[1]))' \
        "$QUIET" || true
}

run_celery() { # $1 = round
    local out=$LOGS/celery-$1
    mkdir -p "$out"
    echo "== round $1: Celery ($POOLS)"
    quiet
    if timeout --signal=TERM --kill-after=60 "$CELERY_LIMIT" bash "$CELERY_DIR/run.sh" --only throughput --runs 1 \
        --n "$TASKS" --concurrency "$CONC" --pools "$POOLS" --out-dir "$out" >"$out/run.log" 2>&1; then
        grep -E '^\[bench .*tasks/s' "$out/run.log" | sed 's/^/   /' || true
    else
        echo "   failed or timed out (exit $?; see $out/run.log):"
        tail -5 "$out/run.log" | sed 's/^/   | /'
    fi
}

run_ours() { # $1 = round
    local log=$LOGS/ours-$1.log
    echo "== round $1: ours ($SETUPS, $MODE)"
    if timeout --signal=TERM --kill-after=60 "$OURS_LIMIT" "$PY" bench/dispatch.py --only throughput --mode "$MODE" \
        --producer "$PRODUCER" --batch "$BATCH" --payload "$PAYLOAD" --pg "$PG" --tasks "$TASKS" \
        --concurrency "$CONC" --setups "$SETUPS" --quiet-wait "$QUIET" --json-out "$LOGS/ours-$1.jsonl" \
        >"$log" 2>"$log.err"; then
        grep -E 'tasks/s, CPU ms a task' "$log.err" | sed 's/^\[[0-9:]*\] */   /' || true
    else
        echo "   failed or timed out (exit $?; see $log.err):"
        tail -5 "$log.err" | sed 's/^/   | /'
    fi
}

for round in $(seq 1 "$ROUNDS"); do
    if ((round % 2)); then
        run_celery "$round"
        run_ours "$round"
    else
        run_ours "$round"
        run_celery "$round"
    fi
done

"$PY" - "$LOGS" "$ROUNDS" <<'PYTHON' | tee "$LOGS/summary.md"
import json
import statistics
import sys
from pathlib import Path

logs, rounds = Path(sys.argv[1]), int(sys.argv[2])
CELERY_PARTS = ("celery_worker", "http_worker_service", "postgres", "redis", "driver_producer")
rows: dict[tuple[str, str], dict] = {}  # (setup, mode) -> {"rate": {round: x}, "disp": [...], ...}
best: dict[int, float] = {}


def add(key, round_, rate, disp, total, producer, busy):
    row = rows.setdefault(key, {"rate": {}, "disp": [], "all": [], "prod": [], "busy": []})
    row["rate"][round_] = rate
    row["disp"].append(disp)
    row["all"].append(total)
    row["prod"].append(producer)
    row["busy"].append(busy)


for r in range(1, rounds + 1):
    latest = logs / f"celery-{r}" / "latest.json"
    if latest.exists():
        for run in json.loads(latest.read_text())["runs"]:
            if "error" in run or run.get("kind") != "throughput":
                continue
            n, cpu = run["n"], run["cpu_s"]
            ms = {part: 1000 * cpu.get(part, 0.0) / n for part in CELERY_PARTS}
            add((f"Celery 5, {run['pool']} pool", "producer .delay()"), r, run["tasks_per_s"], ms["celery_worker"],
                sum(ms.values()), ms["driver_producer"], cpu["machine_busy_pct"])
            best[r] = max(best.get(r, 0.0), run["tasks_per_s"])
    ours = logs / f"ours-{r}.jsonl"
    if ours.exists():
        for line in ours.read_text().splitlines():
            run = json.loads(line)
            mode = run["mode"] if run["mode"] == "prequeued" else f"fair, {run['producer']}"
            add((run["name"], mode), r, run["tasks_per_s"] or float("nan"), run["dispatcher_cpu_ms_per_task"],
                run["all_cpu_ms_per_task"], run["producer_cpu_ms_per_task"], run["machine_busy_pct"])


def cell(values, digits=2):
    values = [v for v in values if v == v]
    if not values:
        return "-"
    med = f"{statistics.median(values):.{digits}f}"
    return med if len(values) == 1 else f"{med} [{min(values):.{digits}f}-{max(values):.{digits}f}]"


head = ["setup", "mode"]
for r in range(1, rounds + 1):
    head += [f"round {r} tasks/s", f"r{r} vs Celery"]
head += ["dispatcher CPU ms/task", "all processes CPU ms/task", "producer CPU ms/task", "machine busy %"]
print("\n| " + " | ".join(head) + " |")
print("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
for (setup, mode), row in rows.items():
    cells = [setup, mode]
    for r in range(1, rounds + 1):
        rate = row["rate"].get(r)
        cells.append("-" if rate is None or rate != rate else f"{rate:.1f}")
        cells.append("-" if rate is None or rate != rate or not best.get(r) else f"{rate / best[r]:.2f}")
    cells += [cell(row["disp"]), cell(row["all"]), cell(row["prod"]), cell(row["busy"], 0)]
    print("| " + " | ".join(cells) + " |")
print(
    "\nvs Celery = tasks/s / the better Celery pool's tasks/s of the same round. CPU ms a task: median "
    "[min-max] over the rounds; Celery's dispatcher = its worker's processes, all = worker, HTTP worker "
    "service, PostgreSQL, Redis and the producer (which also polls); ours = dispatch process(es) (serve: its "
    "process with the ASGI server, and its reference worker child), all = dispatchers, worker, PostgreSQL, producer, API "
    "server, Redis and the polling driver. Celery: tasks/s = N / (last finished_at - first created_at); ours "
    "(fair) = N / (last finished_at - the producer's start)."
)
if not best:
    print("\nNo Celery figure: see the celery-*/run.log files.")
PYTHON
