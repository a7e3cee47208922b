#!/usr/bin/env bash
# xjob's mpi backend against raw MPI, one machine, mpi4py.futures and joblib
# on dask.distributed: rounds of the three programs in turn (interleaved),
# each round taking medians of its repetitions; prints the median over
# rounds of each row and the ratios.
#   bazel run --config=bench //bench:mpi_bench_all -- [--ranks 2] [--rounds 3] [--quick]
# On one machine this measures overhead, not scaling (see the README).
set -euo pipefail
mpi_bench="$1"
mpi4py_bench="$2"
dask_bench="$3"
shift 3
ranks=2
rounds=3
reps=5
sizes=()
py_sizes=()
dask_sizes=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --ranks) ranks="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --quick)
      rounds=1; reps=1
      sizes=(--tiny-tasks 20000 --tiny-unbatched-tasks 2000 --npy-mib 8 --reduce-count 200000)
      py_sizes=(--tiny-tasks 2000 --tiny-unbatched-tasks 200 --reduce-count 20000)
      dask_sizes=(--tiny-tasks 200 --tiny-unbatched-tasks 50)
      shift ;;
    *) echo "usage: mpi_bench.sh MPI_BENCH MPI4PY_BENCH DASK_BENCH [--ranks N] [--rounds N] [--quick]" >&2; exit 2 ;;
  esac
done
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# A short TMPDIR (Bazel's exceeds the Unix socket path limit).
TMPDIR="$(mktemp -d /tmp/xjob-mpi-bench.XXXXXX)"
export TMPDIR
trap 'rm -rf "$TMPDIR"' EXIT
mpirun=(mpirun --oversubscribe --bind-to none)
rows="$TMPDIR/rows"
: >"$rows"
for ((round = 1; round <= rounds; round++)); do
  echo "round $round of $rounds" >&2
  "${mpirun[@]}" -np "$ranks" "$mpi_bench" --reps "$reps" "${sizes[@]}" | grep '^row ' >>"$rows"
  # mpi4py's executor keeps rank 0 as its master: ranks + 1 processes give
  # it as many workers as xjob has ranks.
  if /usr/bin/python3 -c 'import mpi4py' 2>/dev/null; then
    "${mpirun[@]}" -np "$((ranks + 1))" /usr/bin/python3 "$mpi4py_bench" --reps "$reps" "${py_sizes[@]}" | grep '^row ' >>"$rows"
  else
    echo "mpi4py is not installed (python3-mpi4py): no mpi4py rows" >&2
  fi
  if /usr/bin/python3 -c 'import distributed, joblib' 2>/dev/null; then
    /usr/bin/python3 "$dask_bench" --workers "$ranks" --reps "$reps" "${dask_sizes[@]}" 2>/dev/null | grep '^row ' >>"$rows"
  else
    echo "dask.distributed is not installed (python3-distributed): no dask rows" >&2
  fi
done
/usr/bin/python3 - "$rows" "$ranks" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
units = {}
for line in open(sys.argv[1]):
    _, workload, variant, seconds, per, unit = line.split()
    rows[(workload, variant)].append(float(per))
    units[workload] = unit
print(f"# {sys.argv[2]} ranks on one machine; medians over rounds of per-round medians")
print(f"{'workload':8} {'variant':12} {'per task/item or rate':>22}   vs xjob-mpi")
names = {"tiny": "tiny (automatic batches)", "tiny1": "tiny (batch_size 1)", "npy": "npy (new .npy output)",
         "reduce": "reduce (map_reduce)"}
for workload in ["tiny", "tiny1", "npy", "reduce"]:
    if (workload, "xjob-mpi") not in rows:
        continue
    ours = statistics.median(rows[(workload, "xjob-mpi")])
    print(f"-- {names[workload]}")
    for (w, variant), values in sorted(rows.items()):
        if w != workload:
            continue
        value = statistics.median(values)
        if units[workload] == "GB/s":
            ratio = ours / value          # how many times faster xjob-mpi is
        else:
            ratio = value / ours
        print(f"{workload:8} {variant:12} {value:18.3f} {units[workload]:8} xjob-mpi is {ratio:.2f}x as fast")
PY
