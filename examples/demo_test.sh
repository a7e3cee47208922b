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

# Bad usage is refused with status 2 and a message naming the option;
# --help succeeds.
help="$("$demo" --help)" || fail "--help failed"
grep -q '^Usage: demo' <<<"$help" || fail "--help does not print the usage"
grep -q -- '--elements' <<<"$help" || fail "--help does not list --elements"
for bad in 0 abc -5 1.5; do
  set +e
  message="$("$demo" --elements "$bad" 2>&1 >/dev/null)"
  status=$?
  set -e
  [[ $status -eq 2 ]] || fail "--elements $bad gave status $status, not 2"
  grep -q -- "^--elements: .*$bad" <<<"$message" || fail "--elements $bad gave no message naming it: $message"
done
echo "demo_test: PASSED"
