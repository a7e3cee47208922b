#!/usr/bin/env bash
# Runs the quickstart (its path is $1) and checks what it prints: the seeds'
# 128-bit sums of squares exactly, the squares in order, an exact chunked map
# and a written .npy file.
set -euo pipefail
output="$("$1")"
echo "$output"
fail() {
  echo "quickstart_test: $1" >&2
  exit 1
}
[[ $(grep -c '^task [1-4]: 333333283333335000000$' <<<"$output") -eq 4 ]] || fail "sums of squares are not exact"
grep -q '^squares: 0 1 4 9 16 25 36 49 64 81 100 121 144 169 196 225 256 289 324 361$' <<<"$output" ||
  fail "squares missing or out of order"
grep -q '^map_chunks: shape (65536, 16), max error 0$' <<<"$output" || fail "map_chunks result wrong"
grep -q '^wrote .*xjob-quickstart.npy (8388608 bytes of data)$' <<<"$output" || fail "no .npy written"
echo "quickstart_test: PASSED"
