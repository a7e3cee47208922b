#!/usr/bin/env bash
# The mpi backend under Open MPI's mpirun on this machine:
#   1. mpi_test without mpirun (a world of one), then with 1, 2, 3 and 4
#      ranks (3 splits unevenly), oversubscribed on the machine's CPUs, and
#      with 3 ranks whose messages are split in pieces of 4 KiB
#      (XJOB_MPI_MAX_MESSAGE_BYTES), as those over 2 GiB are in 1 GiB ones;
#   2. 3 ranks each as its own "host": TCP between them, no shared memory
#      transport, a TMPDIR each;
#   3. 2 ranks running their shares on the processes backend (a segfault in
#      a worker process names its rank);
#   4. ranks of two different builds: every rank refuses, naming both;
#   5. a rank killed with SIGKILL in the middle of a call: mpirun ends the
#      job with a non-zero status naming the rank, within seconds, and no
#      rank is left running.
#   6. the README's program (examples/mpi_cluster) with 3 ranks: what rank
#      0 prints, and its .npy output read back with numpy.
#   mpi_test.sh MPI_TEST SCENARIOS SCENARIOS_OTHER_BUILD AS_OWN_NODE MPI_CLUSTER
set -uo pipefail
mpi_test="$1"
scenarios="$2"
scenarios_other="$3"
as_own_node="$4"
mpi_cluster="$5"

# As root in CI; no ptrace rights in containers (vader's single-copy
# mechanism needs them); a short TMPDIR (Bazel's exceeds the Unix socket
# path limit of Open MPI's session directory).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_rmaps_base_oversubscribe=1
# Under ASan: Open MPI leaves allocations of the components it unloads at
# MPI_Finalize behind, which LeakSanitizer would report as the ranks' own.
if [[ -n ${ASAN_OPTIONS:-} ]]; then
  export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
fi
base="$(mktemp -d /tmp/xjob-mpi.XXXXXX)"
trap 'rm -rf "$base"' EXIT
export TMPDIR="$base"
mpirun=(timeout --kill-after=10 300 mpirun --oversubscribe --bind-to none)

failures=0
fail() {
  echo "FAILED: $*" >&2
  failures=$((failures + 1))
}

echo "=== mpi_test without mpirun (a world of one)"
timeout --kill-after=10 300 "$mpi_test" --use-colour no || fail "mpi_test without mpirun"

for np in 1 2 3 4; do
  echo "=== mpi_test, $np ranks"
  "${mpirun[@]}" -np "$np" "$mpi_test" --use-colour no || fail "mpi_test with $np ranks"
done

echo "=== mpi_test, 3 ranks, every message split in pieces of 4 KiB (as one over 2 GiB is, in 1 GiB pieces)"
XJOB_MPI_MAX_MESSAGE_BYTES=4096 "${mpirun[@]}" -x XJOB_MPI_MAX_MESSAGE_BYTES -np 3 "$mpi_test" --use-colour no ||
  fail "mpi_test with 3 ranks and messages in pieces of 4 KiB"

echo "=== mpi_test, 3 ranks each as its own host (TCP, a TMPDIR each)"
"${mpirun[@]}" --mca btl self,tcp -np 3 bash "$as_own_node" "$base/nodes" "$mpi_test" --use-colour no ||
  fail "mpi_test with 3 ranks as separate hosts"

echo "=== mpi_test, 2 ranks on the processes backend"
XJOB_TEST_MPI_LOCAL=processes "${mpirun[@]}" -x XJOB_TEST_MPI_LOCAL -np 2 "$mpi_test" --use-colour no ||
  fail "mpi_test with 2 ranks on processes"

echo "=== ranks of two different builds"
out="$("${mpirun[@]}" -np 1 "$scenarios" handshake : -np 1 "$scenarios_other" handshake 2>&1)"
status=$?
echo "$out"
[[ $status -ne 0 ]] || fail "ranks of different builds started"
grep -q "run different programs" <<<"$out" || fail "no message about different programs"
grep -q "rank 0 on .*: build id" <<<"$out" && grep -q "rank 1 on .*: build id" <<<"$out" ||
  fail "the message does not name both ranks and their build ids"
out="$("${mpirun[@]}" -np 2 "$scenarios" handshake 2>&1)" || fail "two ranks of one build did not start: $out"

echo "=== a rank killed with SIGKILL during a call"
started=$(date +%s)
out="$("${mpirun[@]}" -np 3 "$scenarios" kill 2>&1)"
status=$?
took=$(($(date +%s) - started))
echo "$out" | tail -20
[[ $status -ne 0 && $status -ne 124 ]] ||
  fail "mpirun exited with status $status (0: the kill went unnoticed; 124: it hung until the timeout)"
grep -qi "rank 1" <<<"$out" || fail "mpirun's message does not name rank 1"
[[ $took -le 60 ]] || fail "the job took $took s to end after the kill"
sleep 1
if pgrep -f "$scenarios kill" >/dev/null; then
  pgrep -af "$scenarios kill" >&2
  fail "ranks of the killed job are still running"
fi

echo "=== the README's program, 3 ranks"
out="$("${mpirun[@]}" -np 3 "$mpi_cluster" "$base/out.npy" 2>&1)" || fail "mpi_cluster failed: $out"
echo "$out"
expected_sum="$(/usr/bin/python3 -c 'import math; s = 0.0
for i in range(1000000): s += 1.0 / (1.0 + i)
print(f"{s:.6f}")')"
grep -q "^ranks: 3, workers per rank: " <<<"$out" || fail "mpi_cluster does not report 3 ranks"
grep -q "^map: 100000 results, r\[99999\] = 158.113092$" <<<"$out" || fail "mpi_cluster's map result is wrong"
grep -q "^map_reduce: ${expected_sum:0:8}" <<<"$out" || fail "mpi_cluster's map_reduce is not near $expected_sum"
/usr/bin/python3 - "$base/out.npy" <<'PY' || fail "mpi_cluster's .npy output is wrong"
import sys
import numpy as np
y = np.load(sys.argv[1])
x = np.arange(2000 * 64, dtype=np.float64).reshape(2000, 64)
assert y.shape == (2000, 64) and y.dtype == np.float64, (y.shape, y.dtype)
assert np.array_equal(y, np.sqrt(x) * 2.0 + 1.0)
PY
leftovers="$(find "$base" -maxdepth 1 -name 'out.npy.*')"
[[ -z $leftovers ]] || fail "files left beside the output: $leftovers"

if [[ $failures -ne 0 ]]; then
  echo "$failures mpi cases failed" >&2
  exit 1
fi
echo "all mpi cases passed"
