#!/usr/bin/env bash
# Runs seed example 2 (its path is $1) at 1,000,000 increments per worker and
# checks what it prints: the locked, queued and semaphore-guarded totals
# exactly; the unlocked total only for consistency (a race decides it); the
# shared memory closed with nothing to unlink; the pipe's messages in order.
set -euo pipefail
count=1000000
expected=$((2 * count))
output="$("$1" --count "$count")"
echo "$output"
fail() {
  echo "seed2_counter_test: $1" >&2
  exit 1
}
has() { grep -qE "$1" <<<"$output"; }
seconds=', [0-9]+\.[0-9]{3} s$'

has "^seed 2: two workers each add 1 to a counter $count times \(expected total $expected\)$" || fail "no header"

race_line="$(grep -E '^threads, no lock: +total ' <<<"$output")" || fail "no unlocked line"
total="$(sed -E 's/^threads, no lock: +total +([0-9]+) .*/\1/' <<<"$race_line")"
if [[ $race_line =~ \(wrong:\ ([0-9]+)\ updates\ lost\ to\ the\ race\)$seconds ]]; then
  [[ $((total + BASH_REMATCH[1])) -eq $expected ]] || fail "unlocked: total + lost is not $expected"
  [[ $total -gt 0 && $total -lt $expected ]] || fail "unlocked: impossible total $total"
elif [[ $race_line =~ \(right\ this\ time,\ by\ luck:\ the\ race\ is\ still\ there\)$seconds ]]; then
  [[ $total -eq $expected ]] || fail "unlocked: says right but total is $total"
else
  fail "unlocked line malformed: $race_line"
fi

has "^threads, std::mutex: +total +$expected \(exact\)$seconds" || fail "mutex total not exact"
has "^processes, counts summed from ipc::queue: +total +$expected \(exact: $count \+ $count\)$seconds" ||
  fail "queue total not exact"
has "^processes, shared_memory \+ semaphore\(1\): +total +$expected \(exact\)$seconds" ||
  fail "shared memory total not exact"
has '^shared memory "xjob-shm:[0-9]+:[0-9]+:[0-9]+": 8 bytes, closed$' || fail "shared memory not closed"
has '^attach after close: refused; nothing to unlink \(the memfd disappears with its last user\)$' ||
  fail "the closed block could still be attached"

pipe_lines="$(grep '^pipe: ' <<<"$output")"
[[ $pipe_lines == "pipe: parent sends (\"count\", $count)
pipe: parent receives (\"counted\", $count)
pipe: parent sends (\"exit\", 0)
pipe: parent receives (\"bye\", 0)" ]] || fail "pipe messages wrong: $pipe_lines"
has "^pipe, two-way send/recv with a child: +ok$seconds" || fail "pipe exchange not ok"

[[ $(wc -l <<<"$output") -eq 12 ]] || fail "expected 12 lines of output"
echo "seed2_counter_test: PASSED"
