#!/usr/bin/env bash
# Prints, for each public header of xjob, what including it alone costs: the
# preprocessed lines, whether any xtensor or oneTBB header is parsed, and the
# median of three -fsyntax-only runs (g++ -std=c++20 -O0, system headers).
#   bash scripts/header_cost.sh [header...]     # default: every public header
# Run from the repository root. Compare within one run only: parse times
# depend on the machine and on what else runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
CXX=${CXX:-g++}
headers=("$@")
if [[ ${#headers[@]} -eq 0 ]]; then
  mapfile -t headers < <(cd include && find xjob -name '*.hpp' -not -path '*/detail/*' | sort)
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-34s %9s %8s %5s %5s\n' header lines parse_s xt tbb
for h in "${headers[@]}"; do
  printf '#include <%s>\n' "$h" >"$tmp/tu.cc"
  "$CXX" -std=c++20 -Iinclude -E "$tmp/tu.cc" >"$tmp/pp.ii"
  lines=$(wc -l <"$tmp/pp.ii")
  xt=$(grep -c '^# [0-9]* "/usr/include/xtensor/' "$tmp/pp.ii" || true)
  tbb=$(grep -c '^# [0-9]* "/usr/include/\(oneapi/\)\?tbb/' "$tmp/pp.ii" || true)
  times=()
  for _ in 1 2 3; do
    start=$(date +%s.%N)
    "$CXX" -std=c++20 -Iinclude -fsyntax-only "$tmp/tu.cc"
    times+=("$(echo "$(date +%s.%N) - $start" | bc)")
  done
  median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 2p)
  printf '%-34s %9d %8.2f %5s %5s\n' "$h" "$lines" "$median" "$([[ $xt -gt 0 ]] && echo yes || echo no)" "$([[ $tbb -gt 0 ]] && echo yes || echo no)"
done
