#!/usr/bin/env bash
# Installs what is missing (scripts/setup.sh), then runs the whole suite:
#   1. bazel test //...
#   2. bazel test --config=asan //...   (AddressSanitizer + UBSan)
#   3. bazel test --config=tsan //...   (ThreadSanitizer)
# The sanitizer runs leave out tests tagged "no_sanitizer" (the nested-Bazel
# consumer test, the demo and benchmark tests), and "no_asan" / "no_tsan"
# leave out a test under that one (nested OpenMP under TSan). Every run keeps going after
# failures. The last line of output is the only one of the form
#   N passed, N failed
# summed over the runs and counting Bazel test targets (a run that fails
# without naming a failed target, e.g. a broken BUILD file, counts as one
# failure); the exit status is non-zero if anything failed.
#
#   bash scripts/test.sh                  # all of the above on //...
#   bash scripts/test.sh //tests/...      # other targets (patterns as for bazel)
# Environment:
#   XJOB_SANITIZERS           sanitizer configs to run after the plain one;
#                             default "asan tsan", "" for none
#   XJOB_BAZEL_STARTUP_FLAGS  startup flags before the command, default none
#                             (e.g. "--output_base=/tmp/xjob-bazel")
#   XJOB_BAZEL_TEST_FLAGS     extra flags for every bazel test, default none
#   XJOB_TEST_HUGE_PAGES      0: do not reserve huge pages for the run (as
#                             root it reserves 16 and gives them back after)
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1

bash scripts/setup.sh || {
  echo "test.sh: scripts/setup.sh failed" >&2
  echo "0 passed, 1 failed"
  exit 1
}

read -r -a startup_flags <<<"${XJOB_BAZEL_STARTUP_FLAGS:-}"
read -r -a extra_flags <<<"${XJOB_BAZEL_TEST_FLAGS:-}"
read -r -a sanitizers <<<"${XJOB_SANITIZERS-asan tsan}"
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(//...)

logs="$(mktemp -d "${TMPDIR:-/tmp}/xjob-test.XXXXXX")"

# shared_array's huge-page test (XJOB_HUGE_PAGES=on) needs a few reserved
# huge pages; as root, 16 more (32 MiB) are reserved for the run and the
# pool is put back as it was afterwards. Elsewhere that part of the test
# says it was skipped. XJOB_TEST_HUGE_PAGES=0 leaves the pool alone.
hugepages_sysctl=/proc/sys/vm/nr_hugepages
hugepages_before=""
if [[ ${XJOB_TEST_HUGE_PAGES:-1} != 0 && $(id -u) -eq 0 && -w $hugepages_sysctl ]]; then
  hugepages_before="$(cat "$hugepages_sysctl")"
  if echo $((hugepages_before + 16)) >"$hugepages_sysctl" 2>/dev/null; then
    echo "test.sh: reserved 16 huge pages for the run (vm.nr_hugepages $hugepages_before -> $(cat "$hugepages_sysctl"))"
  else
    hugepages_before=""
  fi
fi
cleanup() {
  rm -rf "$logs"
  if [[ -n $hugepages_before ]]; then
    echo "$hugepages_before" >"$hugepages_sysctl" 2>/dev/null ||
      echo "test.sh: could not put vm.nr_hugepages back to $hugepages_before" >&2
  fi
}
trap cleanup EXIT

total_passed=0
total_failed=0
runs=()

# Counts the test targets in bazel's summary, the block of lines just above
# its last "Executed N out of M tests" line:
#   //pkg:name      PASSED in 1.2s      (cached) PASSED      FLAKY, failed in 1 out of 2
#   //pkg:name      FAILED in 1.2s      TIMEOUT in 300s      NO STATUS
#   //pkg:name      FAILED TO BUILD     INCOMPLETE           REMOTE FAILURE
#     /path/to/test.log                 (indented lines: logs, warnings)
# Test logs printed earlier (--test_output=errors), which may hold summaries
# of their own, are never read. A target that failed analysis (a missing
# dependency) is not in the summary; it is counted as failed from bazel's
# "errors encountered while analyzing target" warning. Prints "passed failed".
count_targets() {
  awk '
    { line[NR] = $0 }
    /^Executed [0-9]+ out of [0-9]+ test/ { executed = NR }
    /^WARNING: errors encountered while analyzing target \047/ {
      label = $0
      sub(/^WARNING: errors encountered while analyzing target \047/, "", label)
      sub(/\047.*$/, "", label)
      unanalyzed[label] = 1
    }
    END {
      passed = 0; failed = 0
      if (executed) {
        i = executed - 1
        if (line[i] == "") i--
        for (; i > 0; i--) {
          if (line[i] ~ /^ /) continue
          if (line[i] !~ /^(\/\/|@)[^ ]+ +(\(cached\) )?(PASSED|FLAKY|FAILED|TIMEOUT|NO STATUS|INCOMPLETE|REMOTE FAILURE|SKIPPED)/) break
          split(line[i], words, / +/)
          listed[words[1]] = 1
          if (line[i] ~ /^[^ ]+ +(\(cached\) )?(PASSED|FLAKY)/) passed++
          else if (line[i] !~ /^[^ ]+ +SKIPPED/) failed++
        }
      }
      for (label in unanalyzed) if (!(label in listed)) failed++
      print passed, failed
    }' "$1"
}

# run_tests NAME [FLAG...]: one bazel test over the targets.
run_tests() {
  local name="$1"
  shift
  local log="$logs/$name.log"
  echo
  echo "=== [$name] bazel test${*:+ $*} ${targets[*]}"
  bazel "${startup_flags[@]}" test --test_output=errors --keep_going --color=no --curses=no \
    "$@" "${extra_flags[@]}" -- "${targets[@]}" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local passed failed
  read -r passed failed < <(count_targets "$log")
  # 0: all passed; 3: some tests failed; 4: no test targets matched.
  if [[ $rc -ne 0 && $rc -ne 4 && $failed -eq 0 ]]; then
    echo "test.sh: [$name] bazel exited with status $rc without naming a failed test target; counted as one failure" >&2
    failed=1
  fi
  if [[ $rc -eq 4 ]]; then
    echo "test.sh: [$name] no test targets matched" >&2
  fi
  total_passed=$((total_passed + passed))
  total_failed=$((total_failed + failed))
  runs+=("[$name] test targets: $passed passing, $failed failing (bazel status $rc)")
}

run_tests plain
for config in "${sanitizers[@]}"; do
  # --platform_suffix keeps each sanitizer's outputs in their own directory
  # (asan and tsan are both -c dbg, and would otherwise rebuild each other's).
  run_tests "$config" "--config=$config" --platform_suffix="$config" \
    --test_tag_filters="-no_sanitizer,-no_$config" --build_tests_only
done

echo
for line in "${runs[@]}"; do echo "test.sh: $line"; done
echo "$total_passed passed, $total_failed failed"
[[ $total_failed -eq 0 ]]
