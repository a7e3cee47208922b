#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then runs the demo: maps a
# 512 MiB float64 array with every backend and prints the timings.
#   bash scripts/demo.sh                     # 2^26 elements
#   bash scripts/demo.sh --elements 1000000  # arguments go to the demo
# XJOB_BAZEL_STARTUP_FLAGS (default none) is put before the command, e.g.
# "--output_base=/tmp/xjob-bazel".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh >&2

read -r -a startup_flags <<<"${XJOB_BAZEL_STARTUP_FLAGS:-}"
exec bazel "${startup_flags[@]}" run //examples:demo -- "$@"
