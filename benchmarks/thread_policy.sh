#!/usr/bin/env bash
# Step time of rlbook's trainer (bench_trainer.py --only rlbook, a small step) under three thread policies:
#   default2  torch's default: 2 threads, libgomp's default wait policy (threads spin at barriers before sleeping)
#   passive2  2 threads, OMP_WAIT_POLICY=PASSIVE (threads sleep at barriers)
#   one       1 thread
# with the machine as it is ("asis": record its load average) and with one more busy process ("busy":
# `python -c 'while True: pass'`, killed after the run).  Each run is cut at LIMIT seconds (reported rc=124).
# Usage: benchmarks/thread_policy.sh [OUT] [REPEATS]   env: PY, LIMIT (300), LOADS ("asis busy"), POLICIES, BENCH_ARGS
set -u
OUT=${1:-/tmp/thread_policy}
REPEATS=${2:-2}
PY=${PY:-python}
LIMIT=${LIMIT:-300}
LOADS=${LOADS:-asis busy}
POLICIES=${POLICIES:-one passive2 default2}
BENCH_ARGS=${BENCH_ARGS:---only rlbook --steps 2 --warmup 1 --prompts 2 --group-size 4 --max-new-tokens 16 --micro-batch 8}
mkdir -p "$OUT"
for rep in $(seq 1 "$REPEATS"); do
  for load in $LOADS; do
    for policy in $POLICIES; do
      busy=""
      if [ "$load" = busy ]; then "$PY" -c 'while True: pass' & busy=$!; sleep 2; fi
      case $policy in
        default2) envs=(RLBOOK_THREADS=keep); threads=2 ;;
        passive2) envs=(RLBOOK_THREADS=keep OMP_WAIT_POLICY=PASSIVE); threads=2 ;;
        one) envs=(RLBOOK_THREADS=keep OMP_WAIT_POLICY=PASSIVE); threads=1 ;;
        auto) envs=(); threads=0 ;;  # rlbook's default policy (rlbook.core.threads), decided at start
      esac
      before=$(cut -d' ' -f1-3 /proc/loadavg)
      t0=$(date +%s)
      env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY -u RLBOOK_THREADS "${envs[@]}" timeout "$LIMIT" "$PY" \
        benchmarks/bench_trainer.py $BENCH_ARGS --threads "$threads" --json "$OUT/$policy-$load-$rep.json" \
        > "$OUT/$policy-$load-$rep.log" 2>&1
      rc=$?
      steps=$(grep -o 'step [0-9]*[^:]*: [0-9.]* s' "$OUT/$policy-$load-$rep.log" | tr '\n' ';')
      echo "$policy $load rep$rep rc=$rc wall=$(( $(date +%s) - t0 ))s load_before=[$before] load_after=[$(cut -d' ' -f1-3 /proc/loadavg)] $steps" | tee -a "$OUT/summary.txt"
      if [ -n "$busy" ]; then kill "$busy"; wait "$busy" 2>/dev/null; fi
    done
  done
done
