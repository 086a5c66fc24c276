#!/bin/bash
# PTB characters with the full reproduction budget's settings and twice its epochs
# (12 x 250 minibatches of 64 x 100, H 256): full precision, ternary, binary; seed 0 as in
# `rbtw reproduce`, so the first 6 epochs repeat the full budget's runs exactly.
#     bash bench/ptb_char_longer.sh [OUT_DIR]      (about 19 min on 2 cores)
set -euo pipefail
out=${1:-runs/ptb_char_longer}
mkdir -p "$out"
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1
common=(train ptb_char --preset quick --hidden 256 --seq-len 100 --batch 64 --epochs 12 --max-batches 250
        --eval-max-batches 0)
python3 -m rbtw.cli "${common[@]}" --quant fp --bn --out "$out/fp" > "$out/fp.log" 2>&1 &
python3 -m rbtw.cli "${common[@]}" --quant ternary --stochastic --bn --out "$out/ternary" > "$out/ternary.log" 2>&1
wait
python3 -m rbtw.cli "${common[@]}" --quant binary --stochastic --bn --out "$out/binary" > "$out/binary.log" 2>&1
grep -h '"event": "test"' "$out"/{fp,ternary,binary}/metrics.jsonl
