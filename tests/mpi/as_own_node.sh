#!/usr/bin/env bash
# Starts one rank as if on a host of its own: a TMPDIR of its own (so that
# nothing under /tmp is shared between ranks), then the program.
#   mpirun ... bash as_own_node.sh BASE PROGRAM [ARGS...]
set -euo pipefail
base="$1"
shift
export TMPDIR="$base/rank-${OMPI_COMM_WORLD_RANK:?not started by the mpirun of Open MPI}"
mkdir -p "$TMPDIR"
exec "$@"
