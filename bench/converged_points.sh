#!/bin/bash
# The study's other points: the width point H 128 (fp, ternary, binary; seeds 0 and 1) and
# the GRU (fp, ternary; seed 0) at H 256, each run trained as in the study (7 constant-rate
# epochs, the cosine warm-down to epoch 10, then epochs at its end rate until the convergence
# criterion holds).
# Two chains of single runs, one per core; re-running continues unfinished runs.  A third
# chain runs the longer budget (14 epochs, warm-down from epoch 9.8) for fp and ternary, seed 0,
# branched from the study's 7-epoch prefixes: is the converged gap an artefact of the budget?
#
#     bash bench/converged_points.sh [ROOT]     (ROOT: /work/runs; writes ROOT/converged-h128, -gru)
#
# H 512, which the issue asks for, is not here: measured on this host (3 training processes on 2
# cores, ternary, T 100, B 64) a minibatch takes 0.84 s at H 512 against 0.24 s at H 256, 3.5×,
# so the pair of 11-epoch runs would take about 2 h 10 min of both cores.
set -uo pipefail
root=${1:-/work/runs}
here=$(dirname "$0")
one() {  # CELL HIDDEN OUT RUN
  CELL=$1 HIDDEN=$2 RUNS=$4 bash "$here/converged.sh" study "$3" && CELL=$1 HIDDEN=$2 RUNS=$4 bash "$here/converged.sh" converge "$3"
}
chain_a() {
  for r in fp-s0 ternary-s0 binary-s0 fp-s1 ternary-s1; do one lstm 128 "$root/converged-h128" $r; done
}
chain_b() {
  for r in fp-s0 ternary-s0; do one gru 256 "$root/converged-gru" $r; done
  one lstm 128 "$root/converged-h128" binary-s1
}
chain_c() {
  for r in fp-s0 ternary-s0; do
    bash "$here/converged.sh" arms long $r "$root/converged" \
      && SCHEDULE=long MAX_EPOCHS=18 RUNS=$r bash "$here/converged.sh" converge "$root/converged"
  done
}
chain_a > "$root/points-a.log" 2>&1 &
chain_b > "$root/points-b.log" 2>&1 &
chain_c > "$root/points-c.log" 2>&1 &
wait
