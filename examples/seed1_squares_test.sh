#!/usr/bin/env bash
# Runs seed1_squares (its path is $1) and checks both 20x2 arrays row by row:
# (a) rows [i, i*i] for i in 0..19, (b) the same except row 0, which was
# pre-set to [10, 20] and must survive the workers' writes.
set -euo pipefail
output="$("$1")" || {
  status=$?
  echo "$output"
  echo "seed1_squares_test: the program exited with status $status" >&2
  exit 1
}
echo "$output"
fail() {
  echo "seed1_squares_test: $1" >&2
  exit 1
}
# The expected arrays, printed as NumPy prints them (width 3: 361 is widest).
expected() {
  local first="$1" i a b
  for i in $(seq 0 19); do
    if [[ $i -eq 0 ]]; then a=${first% *} b=${first#* }; else a=$i b=$((i * i)); fi
    printf '%s[%3d %3d]%s\n' "$([[ $i -eq 0 ]] && echo '[' || echo ' ')" "$a" "$b" "$([[ $i -eq 19 ]] && echo ']')"
  done
}
# The 20 lines after a section's heading.
section() { awk -v head="$1" 'index($0, head) == 1 { found = 1; next } found && n < 20 { print; n++ }' <<<"$output"; }

[[ "$(section '(a) ')" == "$(expected '0 0')" ]] || fail "array (a) is not [[0 0] [1 1] ... [19 361]]"
[[ "$(section '(b) ')" == "$(expected '10 20')" ]] || fail "array (b) is not [[10 20] [1 1] ... [19 361]]"
grep -q '^row 0 preserved: yes$' <<<"$output" || fail "row 0 not preserved"
grep -Eq '^computed by [12] worker process\(es\), none of them the main process: yes$' <<<"$output" ||
  fail "the pool's rows did not come from worker processes"
echo "seed1_squares_test: PASSED"
