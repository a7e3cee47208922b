#!/usr/bin/env bash
# Runs seed5_pool_sleep (its path is $1) with f sleeping 0.1 s and checks:
# the map's results and that it took at least 3 sleeps (5 tasks on 2
# workers: some worker ran 3 of them, one after another), that the tasks ran
# in the pool's workers with indices 0 and 1, a row per start method with
# the tiny task's result, and that the daemon worker died with its parent.
set -euo pipefail
program="$1"
sleep=0.1

output="$("$program" --sleep $sleep)" || {
  status=$?
  echo "$output"
  echo "seed5_pool_sleep_test: the program exited with status $status" >&2
  exit 1
}
echo "$output"
fail() {
  echo "seed5_pool_sleep_test: $1" >&2
  exit 1
}

# 1. The map.
grep -q '^  results: 1 4 9 16 25$' <<<"$output" || fail "results are not 1 4 9 16 25"
main_pid=$(sed -n 's/^  main process: pid \([0-9]*\), worker index none$/\1/p' <<<"$output")
[[ -n $main_pid ]] || fail "no main process line with worker index none"
declare -A index_of
for x in 1 2 3 4 5; do
  line=$(grep "^  f($x) = $((x * x)) in pid [0-9]*, worker index [01]\$" <<<"$output") || fail "no line for f($x)"
  pid=$(sed 's/.* in pid \([0-9]*\),.*/\1/' <<<"$line")
  index=${line##* }
  [[ $pid != "$main_pid" ]] || fail "f($x) ran in the main process"
  [[ -z ${index_of[$pid]:-} || ${index_of[$pid]} == "$index" ]] || fail "pid $pid has two worker indices"
  index_of[$pid]=$index
done
[[ ${#index_of[@]} -le 2 ]] || fail "more than 2 worker pids in a pool of 2"
elapsed=$(sed -n 's/^  time: \([0-9.]*\) s = [0-9.]* x the sleep .*/\1/p' <<<"$output")
[[ -n $elapsed ]] || fail "no time line"
awk -v t="$elapsed" -v s="$sleep" 'BEGIN { exit !(t >= 3 * s) }' ||
  fail "the map took $elapsed s, less than 3 x $sleep s: 5 sleeping tasks cannot finish that fast on 2 workers"

# 2. The start methods.
for method in fork forkserver spawn; do
  grep -Eq "^  $method +[0-9]+\.[0-9]{4}  42\$" <<<"$output" || fail "no row for start method $method"
done

# 3. The daemon.
grep -q '^  parent killed: exit code -9$' <<<"$output" || fail "the parent was not killed by SIGKILL"
grep -q '^daemon worker died with its parent: yes$' <<<"$output" || fail "the daemon worker outlived its parent"

# Usage: --help succeeds, a sleep of 0 is refused.
help="$("$program" --help)" || fail "--help failed"
grep -q -- '--sleep' <<<"$help" || fail "--help does not list --sleep"
if "$program" --sleep 0 >/dev/null 2>&1; then fail "--sleep 0 was accepted"; fi
echo "seed5_pool_sleep_test: PASSED"
