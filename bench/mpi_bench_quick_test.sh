#!/usr/bin/env bash
# mpi_bench.sh --quick: every row of every program is printed.
set -euo pipefail
out="$(bash "$4" "$1" "$2" "$3" --quick --ranks 2)"
echo "$out"
for row in "tiny xjob-mpi" "tiny raw-mpi" "tiny one-machine" "tiny mpi4py" "tiny dask" "tiny1 xjob-mpi" \
  "tiny1 mpi4py" "tiny1 dask" "npy xjob-mpi" "npy raw-mpi" "npy one-machine" "reduce xjob-mpi" "reduce raw-mpi" \
  "reduce mpi4py"; do
  read -r workload variant <<<"$row"
  grep -qE "^$workload +$variant +[0-9]" <<<"$out" || { echo "missing row: $row" >&2; exit 1; }
done
echo "all rows present"
