#!/usr/bin/env bash
# The converged PTB-character study at every width, in order of value per core-hour:
#   1. H 1000 full precision and ternary (prefixes, then the constant arms — the paper's recipe,
#      so its gap is known first — then the cosine arms; each arm followed by epochs at its end
#      rate until validation gains < 0.005),
#   2. the H 256 constant arm (the cosine arm and the prefixes exist from the first study, or
#      are trained now), then the rest of H 256,
#   3. H 512 (fp, ternary, binary),
#   4. H 1000 binary,
#   5. H 1000 BinaryConnect (binary weights without BN: the claim is that it fails).
# Each step is one `rbtw sweep`; every step resumes unfinished runs from their checkpoints and
# skips finished ones, so running this again after an interruption (Ctrl-C, a lost machine)
# continues where it stopped.  Two runs train side by side, one thread each.
#
#     bash bench/studies/run.sh [OUT]          (OUT: where the study directories go; default runs)
#     python3 bench/converged.py OUT/study-h256 OUT/study-h512 OUT/study-h1000
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-runs}
step() {
    echo "== rbtw sweep $* ($(date -u +%FT%TZ))"
    rbtw sweep "$@" --workers 2
    echo "== exit $? ($(date -u +%FT%TZ))"
}
step "$here/ptb_char_h1000.toml" --out "$out/study-h1000" --only fp,ternary,constant
step "$here/ptb_char_h1000.toml" --out "$out/study-h1000" --only fp,ternary
step "$here/ptb_char_h256.toml" --out "$out/study-h256" --only constant
step "$here/ptb_char_h256.toml" --out "$out/study-h256"
step "$here/ptb_char_h512.toml" --out "$out/study-h512"
step "$here/ptb_char_h1000.toml" --out "$out/study-h1000" --only fp,ternary,binary
step "$here/ptb_char_h1000.toml" --out "$out/study-h1000"
