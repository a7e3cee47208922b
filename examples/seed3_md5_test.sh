#!/usr/bin/env bash
# Runs seed example 3 (its path is $1) at a small size (2,000 rounds, 6
# calls, 3 workers, 0.2 s start-up) and checks its digests against Python's
# hashlib: the one call's, and the digest of all the calls' digests, which
# every variant must reproduce. Timings are checked for form only.
set -euo pipefail
rounds=2000
calls=6
workers=3
output="$("$1" --rounds "$rounds" --calls "$calls" --workers "$workers" --start-up 0.2)"
echo "$output"
fail() {
  echo "seed3_md5_test: $1" >&2
  exit 1
}
has() { grep -qE "$1" <<<"$output"; }

# md5_million_times as the article writes it: one md5 object, never reset.
read -r hello all <<<"$(python3 - "$rounds" "$calls" <<'PY'
import hashlib, sys
rounds, calls = int(sys.argv[1]), int(sys.argv[2])
def md5_million_times(msg):
    m = hashlib.md5()
    for _ in range(rounds):
        m.update(msg.encode())
        msg = m.hexdigest()
    return msg
digests = [md5_million_times(f"Hello World {i}") for i in range(calls)]
print(md5_million_times("Hello World"), hashlib.md5("".join(digests).encode()).hexdigest())
PY
)"

time='[0-9]+\.[0-9]{3} s'
has "^seed 3: md5_million_times with $rounds rounds; $calls calls; $workers workers with a 0.2 s start-up$" ||
  fail "no header"
has "^one call: +$time +md5_million_times\(\"Hello World\"\) = $hello$" || fail "one call's digest is not $hello"
has "^$calls calls in a row: +$time +\([0-9.]+x one call\)$" || fail "no line for the calls in a row"
has "^$calls processes started at once: +$time +\([0-9.]+x the speed of the calls in a row\)$" ||
  fail "no line for one process per call"
has "^$workers workers fed through ipc pipes: +$time +\(including the 0.2 s start-up\)$" ||
  fail "no line for the persistent workers"
has "^  the workers' finish times \(s\):( [0-9]+\.[0-9]{2}){$workers}$" || fail "not $workers finish times"
has "^process_pool\($workers workers, initializer\), map: +$time +\(including the 0.2 s start-up; initializer ran $workers times\)$" ||
  fail "no pool line, or the initializer did not run once per worker"
has "^md5 of the $calls digests in request order: $all$" || fail "the calls' digests are not Python's ($all)"
has '^every variant gives the same digests: yes$' || fail "variants disagree"
! has 'DIFFER' || fail "a variant's digests differ"
echo "seed3_md5_test: PASSED"
