#!/bin/bash
# The converged PTB-character study: BN-LSTM H 256, T 100, B 64, every minibatch of every epoch
# (784 an epoch), 10 epochs, Adam 2e-3, one BLAS thread per run, two runs at a time.
#
# Every schedule compared here keeps the rate constant for the first 7 epochs (the cosine
# warm-down covers the last 30 % of the 7,840 minibatches), so each (variant, seed) trains
# those 7 epochs once, as a prefix run, and each schedule is a branch of it
# (rbtw.train.branch, tested to continue bit for bit like a run started with that schedule):
#
#     bash bench/converged.sh prefix [OUT]                   7 constant-rate epochs, every run
#     bash bench/converged.sh arms "constant cosine" RUNS [OUT]   branch + 3 more epochs
#     bash bench/converged.sh arms long RUNS [OUT]   a longer budget: 14 epochs, the same warm-down
#                                                    over the last 30 % (from epoch 9.8)
#     bash bench/converged.sh study [OUT]    per run: prefix, then its cosine arm (the study)
#     bash bench/converged.sh converge [OUT]  per finished cosine run: more epochs at the warm-down's
#                                             end rate until validation BPC gains < 0.005 an epoch
#
# The convergence criterion (validation BPC improving by less than 0.005 over the last epoch) is
# applied after the schedule: a finished run whose last epoch gained more is resumed with one
# more epoch at a time (`rbtw train --resume --epochs E+1`; the warm-down keeps its 10-epoch span
# and the added epochs run at its end rate, 0.02 × 2e-3), up to MAX_EPOCHS (default 16);
# SCHEDULE=long bash bench/converged.sh converge does the same for the longer budget's runs.
#
# CELL (lstm), HIDDEN (256) and RUNS (all ten) select other study points, e.g. the GRU or the
# width point: CELL=gru RUNS="fp-s0 ternary-s0" bash bench/converged.sh study /work/runs/converged-gru
#
# RUNS is a space-separated list such as "ternary-s0" or "all".  The pilot is
#     bash bench/converged.sh arms "constant cosine" ternary-s0
# judged on validation BPC; the study then runs the winner on every run.  Re-running a phase
# continues unfinished runs from their checkpoints and skips finished ones.
# Afterwards: python3 bench/converged.py OUT  (conventions, intervals, converged.json, plots).
set -euo pipefail
phase=${1:?prefix or arms}
if [ "$phase" = study ]; then out=${2:-/work/runs/converged}
elif [ "$phase" = arms ]; then schedules=${2:?schedules}; runs=${3:?runs}; out=${4:-/work/runs/converged}
else out=${2:-/work/runs/converged}; fi
mkdir -p "$out/prefix"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
export out BENCH=$(cd "$(dirname "$0")" && pwd)
ALL=${RUNS:-"ternary-s0 fp-s0 binary-s0 ternary-s1 fp-s1 binary-s1 ternary-s2 fp-s2 binary-s2 binaryconnect-s0"}
[ "${runs:-all}" = all ] && runs=$ALL
export CELL=${CELL:-lstm} HIDDEN=${HIDDEN:-256} MAX_EPOCHS=${MAX_EPOCHS:-16} SCHEDULE=${SCHEDULE:-cosine}

train_prefix() {  # NAME (VARIANT-sSEED)
  local name=$1 variant=${1%-s*} seed=${1##*-s} dir="$out/prefix/$1" args
  case $variant in
    fp) args="--quant fp --bn" ;;
    ternary) args="--quant ternary --stochastic --bn" ;;
    binary) args="--quant binary --stochastic --bn" ;;
    binaryconnect) args="--quant binary --stochastic --no-bn" ;;
  esac
  if grep -qs '"event": "test"' "$dir/metrics.jsonl"; then echo "prefix $name: finished"; return 0; fi
  local cmd="--preset quick --cell $CELL --hidden $HIDDEN --seq-len 100 --batch 64 --epochs 7 --max-batches 0
      --eval-max-batches 0 --lr 2e-3 --lr-warmdown none $args --seed $seed --force"
  [ -f "$dir/checkpoint.npz" ] && cmd="--resume"       # a resumed run keeps its own settings
  echo "prefix $name: start ($cmd) $(date -u +%H:%M:%S)"
  nice -n 19 python3 -m rbtw.cli train ptb_char $cmd --out "$dir" >> "$out/prefix/$name.log" 2>&1 \
      || { echo "prefix $name: FAILED"; return 1; }
  echo "prefix $name: done $(date -u +%H:%M:%S)"
}
train_arm() {  # NAME SCHEDULE
  local name=$1 schedule=$2 variant=${1%-s*} seed=${1##*-s}
  local dir="$out/$variant-$schedule-s$seed"
  if grep -qs '"event": "test"' "$dir/metrics.jsonl"; then echo "$dir: finished"; return 0; fi
  if [ ! -f "$dir/checkpoint.npz" ]; then
    grep -qs '"event": "test"' "$out/prefix/$name/metrics.jsonl" || { echo "$dir: prefix not finished"; return 1; }
    local warm='lr_warmdown="cosine", lr_warmdown_frac=0.3, lr_warmdown_to=0.02' epochs=10
    case $schedule in
      constant) warm='lr_warmdown="none"' ;;
      cosine|long) ;;
      *) echo "$dir: unknown schedule $schedule (constant, cosine or long)"; return 1 ;;
    esac
    [ "$schedule" = long ] && epochs=14
    python3 -c "from rbtw.train import branch; branch('$out/prefix/$name', '$dir', epochs=$epochs, $warm)"
  fi
  echo "$dir: start $(date -u +%H:%M:%S)"
  nice -n 19 python3 -m rbtw.cli train ptb_char --resume --out "$dir" >> "$dir.log" 2>&1 || { echo "$dir: FAILED"; return 1; }
  echo "$dir: done $(date -u +%H:%M:%S)"
}
converge_run() {  # DIR: one more epoch at a time at the warm-down's end rate until the criterion holds
  local dir=$1 next
  while :; do
    next=$(python3 "$BENCH/converged.py" --next "$dir" --max-epochs "$MAX_EPOCHS") || return 1
    case $next in
      converged|cap) echo "$dir: $next after $(grep -c '"event": "epoch"' "$dir/metrics.jsonl") epochs"; return 0 ;;
      resume) local opt="" ;;
      *) local opt="--epochs $next"      # keep the warm-down's last checkpoint for the report
         [ -f "$dir/schedule-end.npz" ] || cp "$dir/checkpoint.npz" "$dir/schedule-end.npz" ;;
    esac
    echo "$dir: ${opt:-resume} $(date -u +%H:%M:%S)"
    nice -n 19 python3 -m rbtw.cli train ptb_char --resume $opt --out "$dir" >> "$dir.log" 2>&1 \
        || { echo "$dir: FAILED"; return 1; }
  done
}
export -f train_prefix train_arm converge_run

if [ "$phase" = prefix ]; then
  printf '%s\n' $ALL | xargs -P 2 -I{} bash -c 'train_prefix {}'
elif [ "$phase" = converge ]; then  # the seeds of each variant interleaved, fp first
  for v in fp ternary binary binaryconnect; do for r in $ALL; do
    [ "${r%-s*}" = "$v" ] && [ -d "$out/$v-$SCHEDULE-s${r##*-s}" ] && echo "$out/$v-$SCHEDULE-s${r##*-s}"
  done; done | xargs -P 2 -I{} bash -c 'converge_run {}'
elif [ "$phase" = study ]; then   # two runs at a time, each straight from its prefix to its arm
  printf '%s\n' $ALL | xargs -P 2 -I{} bash -c 'train_prefix {} && train_arm {} cosine'
else
  for r in $runs; do for s in $schedules; do echo "$r $s"; done; done | xargs -P 2 -L 1 bash -c 'train_arm "$@"' _
fi
