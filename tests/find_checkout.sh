# Sourced by the consumer tests (tests/consumer_check, tests/cmake_consumer),
# which build the checkout itself rather than declared inputs:
#   source "$(dirname "${BASH_SOURCE[0]}")/../find_checkout.sh"
#   checkout="$(find_checkout my_test)"
# find_checkout NAME prints the checkout's root: the real path of
# bazel/deps.bzl (a runfile symlink to the source file under Bazel; the
# test lists //bazel:deps.bzl in its data), two levels up. NAME starts the
# error message when it cannot be found.
find_checkout() {
  local candidate
  for candidate in \
      "${TEST_SRCDIR:-}/${TEST_WORKSPACE:-xjob}/bazel/deps.bzl" \
      "${RUNFILES_DIR:-}/${TEST_WORKSPACE:-xjob}/bazel/deps.bzl" \
      "$0.runfiles/xjob/bazel/deps.bzl" \
      "$(dirname "$0")/../../bazel/deps.bzl"; do
    if [[ -e "$candidate" ]]; then
      dirname "$(dirname "$(readlink -f "$candidate")")"
      return 0
    fi
  done
  echo "$1: cannot find bazel/deps.bzl among the runfiles" >&2
  return 1
}
