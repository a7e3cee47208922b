#!/bin/sh
# Smoke test: a benchmark's --quick run (map_bench, processes_bench) must run
# to the end with every output correct (it exits non-zero on a wrong result).
# The timings are not judged.
set -eu
bench="${1:?usage: run_quick.sh path/to/benchmark}"
exec "$bench" --quick
