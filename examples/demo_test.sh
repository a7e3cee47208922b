#!/usr/bin/env bash
# Runs the demo (its path is $1) on a small array: it must exit 0, print the
# table header and a row per run, and report that the results agree.
set -euo pipefail
demo="$1"

output="$("$demo" --elements 300007)" || {
  status=$?
  echo "$output"
  echo "demo_test: the demo exited with status $status" >&2
  exit 1
}
echo "$output"

fail() {
  echo "demo_test: $1" >&2
  exit 1
}
grep -Eq '^backend +n_jobs +seconds +GB/s +speed-up$' <<<"$output" || fail "no table header"
grep -Eq '^sequential +1 ' <<<"$output" || fail "no row for the sequential backend"
grep -Eq '^threads +2 ' <<<"$output" || fail "no row for the threads backend at n_jobs 2"
grep -Eq '^processes +2 ' <<<"$output" || fail "no row for the processes backend at n_jobs 2"
grep -q '^results agree: yes' <<<"$output" || fail "no 'results agree: yes'"

# Bad usage is refused with status 2; --help succeeds.
"$demo" --help | grep -q '^usage: demo' || fail "--help does not print the usage"
set +e
"$demo" --elements 0 >/dev/null 2>&1
status=$?
set -e
[[ $status -eq 2 ]] || fail "--elements 0 gave status $status, not 2"
echo "demo_test: PASSED"
