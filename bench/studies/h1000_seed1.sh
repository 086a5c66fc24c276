#!/usr/bin/env bash
# What is left of the paper-width study (H 1000), on seed 1 (REPRODUCTION.md, "H 1000, seed 1"):
# full precision's constant arm has finished; binary, fp's cosine arm and ternary remain.  Two
# chains train side by side, one core each:
#   A. binary: its prefix, then both arms (the binary claim has no H 1000 figure yet);
#   B. full precision's cosine arm (its prefix first), then ternary: prefix and both arms, on
#      two workers, so that its arms train side by side once binary's chain has ended (it ends
#      first: 15 epochs against 18 before ternary's arms can start).
# Every run resumes from its checkpoint and finished runs are skipped, so running this again
# after an interruption (Ctrl-C, the end of a session) continues where it stopped — on the
# machine that holds OUT.  About 14 h of wall time from scratch (about 32 min an epoch).
#
#     bash bench/studies/h1000_seed1.sh [OUT]      (OUT: where the study directory goes; default runs)
#     python3 bench/converged.py OUT/study-h1000-s1
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-runs}
mkdir -p "$out"
file="$out/h1000-s1.toml"
sed 's/^seeds = .*/seeds = [1]/' "$here/ptb_char_h1000.toml" > "$file"
dir="$out/study-h1000-s1"
step() {    # step VARIANTS[,ARMS] WORKERS
    echo "== rbtw sweep --only $1 --workers $2 ($(date -u +%FT%TZ))"
    rbtw sweep "$file" --out "$dir" --only "$1" --workers "$2"
    local status=$?
    echo "== --only $1: exit $status ($(date -u +%FT%TZ))"
    return $status
}
step binary 1 &
{ step fp,cosine 1 && step ternary 2; } &
wait
