#!/bin/bash
# The converged PTB-character study: BN-LSTM H 256, T 100, B 64, every minibatch of every epoch
# (784 a epoch), 10 epochs, Adam 2e-3, one BLAS thread per run, two runs at a time.
#
#     bash bench/converged.sh pilot [OUT]             ternary seed 0: constant rate vs cosine warm-down
#     bash bench/converged.sh study SCHEDULE [OUT]    fp, ternary, binary x seeds 0-2, BinaryConnect seed 0
#
# SCHEDULE is "constant" or "cosine" (the pilot's winner on the validation split).  Re-running
# a phase continues unfinished runs from their checkpoints and skips finished ones.  A run that
# already exists under the same name (e.g. the pilot's ternary seed 0) is reused, not retrained.
# Afterwards: python3 bench/converged.py OUT  (conventions, intervals, converged.json, plots).
set -euo pipefail
phase=${1:?pilot or study}
if [ "$phase" = study ]; then schedule=${2:?constant or cosine}; out=${3:-/work/runs/converged}
else out=${2:-/work/runs/converged}; fi
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
common="train ptb_char --preset quick --hidden 256 --seq-len 100 --batch 64 --epochs 10 --max-batches 0 --eval-max-batches 0 --lr 2e-3"

sched_args() {  # constant | cosine
  if [ "$1" = cosine ]; then echo "--lr-warmdown cosine --lr-warmdown-frac 0.3 --lr-warmdown-to 0.02"
  else echo "--lr-warmdown none"; fi
}
variant_args() {
  case $1 in
    fp) echo "--quant fp --bn" ;;
    ternary) echo "--quant ternary --stochastic --bn" ;;
    binary) echo "--quant binary --stochastic --bn" ;;
    binaryconnect) echo "--quant binary --stochastic --no-bn" ;;
  esac
}
one_run() {  # NAME VARIANT SEED SCHEDULE
  local dir="$out/$1"
  if grep -qs '"event": "test"' "$dir/metrics.jsonl"; then echo "$1: finished"; return 0; fi
  local mode=--force
  [ -f "$dir/checkpoint.npz" ] && mode=--resume
  echo "$1: start ($mode) $(date -u +%H:%M:%S)"
  nice -n 19 python3 -m rbtw.cli $common $(variant_args "$2") --seed "$3" $(sched_args "$4") \
      --out "$dir" $mode >> "$out/$1.log" 2>&1 || echo "$1: FAILED (see $out/$1.log)"
  echo "$1: done $(date -u +%H:%M:%S)"
}
export -f one_run sched_args variant_args; export out common

if [ "$phase" = pilot ]; then
  printf '%s\n' "ternary-constant-s0 ternary 0 constant" "ternary-cosine-s0 ternary 0 cosine" |
    xargs -P 2 -L 1 bash -c 'one_run "$@"' _
else
  jobs=()
  for seed in 0 1 2; do for v in fp ternary binary; do jobs+=("$v-$schedule-s$seed $v $seed $schedule"); done; done
  jobs+=("binaryconnect-$schedule-s0 binaryconnect 0 $schedule")
  printf '%s\n' "${jobs[@]}" | xargs -P 2 -L 1 bash -c 'one_run "$@"' _
fi
