#!/usr/bin/env bash
# Runs seed4_sum_of_squares (its path is $1) with a count whose sums need
# more than 64 bits, and checks that every way of running the four jobs
# prints the exact sum n(n-1)(2n-1)/6 for every job, in job order, with a
# time per way; that the pool's jobs ran in its two workers; and the usage.
set -euo pipefail
program="$1"
count=5000000

# n(n-1)(2n-1)/6 in decimal, exactly, with 64-bit shell arithmetic: divide
# out the 6 first, then multiply x * y (both < 10^18) in base-10^9 limbs.
sum_of_squares() {
  local n=$1 a b c x y xh xl yh yl l0 l1 l2 d0 d1 carry
  a=$n b=$((n - 1)) c=$((2 * n - 1))
  if ((a % 2 == 0)); then a=$((a / 2)); else b=$((b / 2)); fi
  if ((a % 3 == 0)); then a=$((a / 3)); elif ((b % 3 == 0)); then b=$((b / 3)); else c=$((c / 3)); fi
  x=$((a * b)) y=$c
  xh=$((x / 1000000000)) xl=$((x % 1000000000)) yh=$((y / 1000000000)) yl=$((y % 1000000000))
  l0=$((xl * yl)) l1=$((xh * yl + xl * yh)) l2=$((xh * yh))
  d0=$((l0 % 1000000000)) carry=$((l0 / 1000000000))
  l1=$((l1 + carry)) d1=$((l1 % 1000000000)) carry=$((l1 / 1000000000))
  l2=$((l2 + carry))
  if ((l2 > 0)); then
    printf '%d%09d%09d\n' "$l2" "$d1" "$d0"
  elif ((d1 > 0)); then
    printf '%d%09d\n' "$d1" "$d0"
  else
    printf '%d\n' "$d0"
  fi
}
fail() {
  echo "seed4_sum_of_squares_test: $1" >&2
  exit 1
}
# The arithmetic itself, against the article's value.
[[ $(sum_of_squares 10000000) == 333333283333335000000 ]] || fail "the test's own arithmetic is wrong"
expected=$(sum_of_squares $count)

output="$("$program" --count $count)" || {
  status=$?
  echo "$output"
  echo "seed4_sum_of_squares_test: the program exited with status $status" >&2
  exit 1
}
echo "$output"

# Four ways, each printing jobs 1..4 with the exact sum, then its time.
for heading in '^sequential:$' '^one xjob::process per job \(fork\):$' \
  '^process_pool\(2\)\.starmap\(task, jobs, chunksize = 1\):$' '^xjob::parallel\(\{\.n_jobs = 4, \.backend = "processes"\}\)'; do
  grep -Eq "$heading" <<<"$output" || fail "no section $heading"
done
[[ $(grep -c '^  job [1-4]: ' <<<"$output") -eq 16 ]] || fail "not 16 job results"
[[ $(grep -c "^  job [1-4]: $expected\$" <<<"$output") -eq 16 ]] || fail "a sum is not exactly $expected"
[[ "$(grep -o '^  job [1-4]: ' <<<"$output" | tr -dc '1-4')" == 1234123412341234 ]] || fail "results out of job order"
[[ $(grep -Ec '^  time: [0-9]+\.[0-9]{3} s, speed-up over sequential: [0-9]+\.[0-9]{2}x$' <<<"$output") -eq 4 ]] ||
  fail "not 4 time lines"

# One process per job: four distinct pids, none the main process's.
main_pid=$(sed -n 's/^4 jobs, count = [0-9]*; main process pid \([0-9]*\)$/\1/p' <<<"$output")
[[ -n $main_pid ]] || fail "no main pid"
read -r -a process_pids <<<"$(sed -n 's/^  pids: //p' <<<"$output")"
[[ ${#process_pids[@]} -eq 4 ]] || fail "not 4 process pids"
[[ $(printf '%s\n' "${process_pids[@]}" "$main_pid" | sort -u | wc -l) -eq 5 ]] || fail "process pids not distinct"

# The pool: each job ran in one of its two workers; the yes/no agrees.
read -r -a workers <<<"$(sed -n 's/^  pool workers: //p' <<<"$output")"
[[ ${#workers[@]} -eq 2 ]] || fail "the pool does not list 2 workers"
declare -A pid_of
for job in 1 2 3 4; do
  pid=$(sed -n "s/^  job $job ran in pid \\([0-9]*\\)\$/\\1/p" <<<"$output")
  [[ $pid == "${workers[0]}" || $pid == "${workers[1]}" ]] || fail "job $job ran in pid '$pid', not a pool worker"
  pid_of[$job]=$pid
done
same=no
[[ ${pid_of[1]} == "${pid_of[3]}" ]] && same=yes
grep -q "^  jobs 1 and 3 ran in the same pid: $same " <<<"$output" || fail "the same-pid line does not say $same"

# Usage: --help succeeds, a count of 0 is refused.
help="$("$program" --help)" || fail "--help failed"
grep -q -- '--count' <<<"$help" || fail "--help does not list --count"
if "$program" --count 0 >/dev/null 2>&1; then fail "--count 0 was accepted"; fi
echo "seed4_sum_of_squares_test: PASSED"
