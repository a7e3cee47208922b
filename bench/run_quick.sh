#!/bin/sh
# Smoke test: map_bench --quick must run to the end with every output
# correct (it exits non-zero on a wrong result). The timings are not judged.
set -eu
bench="${1:?usage: run_quick.sh path/to/map_bench}"
exec "$bench" --quick
