#!/usr/bin/env bash
# Step time of rlbook's trainer under three thread policies, with the machine as it is ("idle") and with one
# competing busy process (`python -c 'while True: pass'`), each repeated REPEATS times.  One JSON per run in OUT.
# Usage: benchmarks/thread_policy.sh [OUT] [REPEATS]   (PY: the python to use; extra bench args in BENCH_ARGS)
set -u
OUT=${1:-/tmp/thread_policy}
REPEATS=${2:-2}
PY=${PY:-python}
BENCH_ARGS=${BENCH_ARGS:---only rlbook --steps 2 --warmup 1 --prompts 2 --group-size 4 --max-new-tokens 16 --micro-batch 8}
mkdir -p "$OUT"
for rep in $(seq 1 "$REPEATS"); do
  for load in idle busy; do
    for policy in default2 passive2 one; do
      busy=""
      if [ "$load" = busy ]; then "$PY" -c 'while True: pass' & busy=$!; sleep 2; fi
      case $policy in
        default2) envs=(); threads=2 ;;  # torch's default: libgomp spins at barriers before it sleeps
        passive2) envs=(OMP_WAIT_POLICY=PASSIVE); threads=2 ;;
        one) envs=(OMP_WAIT_POLICY=PASSIVE); threads=1 ;;
      esac
      before=$(cut -d' ' -f1-3 /proc/loadavg)
      t0=$(date +%s)
      env -u OMP_NUM_THREADS -u OMP_WAIT_POLICY -u RLBOOK_THREADS "${envs[@]}" RLBOOK_THREADS=off "$PY" benchmarks/bench_trainer.py \
        $BENCH_ARGS --threads "$threads" --json "$OUT/$policy-$load-$rep.json" > "$OUT/$policy-$load-$rep.log" 2>&1
      echo "$policy $load rep$rep rc=$? wall=$(( $(date +%s) - t0 ))s load_before=[$before] load_after=[$(cut -d' ' -f1-3 /proc/loadavg)]" | tee -a "$OUT/summary.txt"
      if [ -n "$busy" ]; then kill "$busy"; wait "$busy" 2>/dev/null; fi
    done
  done
done
