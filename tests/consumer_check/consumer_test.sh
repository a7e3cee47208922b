#!/usr/bin/env bash
# Builds and runs tests/consumer/ (a workspace that uses xjob the usual way:
# local_repository + xjob_dependencies() + deps = ["@xjob//:xjob"]) with a
# nested Bazel, offline. Run by `bazel test //tests/consumer_check:consumer_test`
# (tagged "local": no sandbox), or directly: tests/consumer_check/consumer_test.sh.
set -euo pipefail

# The checkout's root (tests/find_checkout.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../find_checkout.sh"
checkout="$(find_checkout consumer_test)"
if [[ ! -f "$checkout/WORKSPACE" || ! -f "$checkout/tests/consumer/WORKSPACE" ]]; then
  echo "consumer_test: $checkout is not an xjob checkout with tests/consumer/" >&2
  exit 1
fi
echo "xjob checkout: $checkout"

# Everything the nested Bazel writes goes under one scratch directory: the
# copy of the consumer workspace, HOME (unset or read-only inside a test),
# and the output root and base. TEST_TMPDIR is fresh for each run, so the
# nested build is a clean one, as from a fresh clone.
scratch_parent="${TEST_TMPDIR:-${TMPDIR:-/tmp}}"
scratch="$(mktemp -d "$scratch_parent/consumer.XXXXXX")"
cleanup() {
  # The output base holds read-only directories (external repositories,
  # the execroot); make them writable so that they can be removed.
  chmod -R u+w "$scratch" 2>/dev/null || true
  rm -rf "$scratch" 2>/dev/null || true
}
trap cleanup EXIT

workspace="$scratch/workspace"
mkdir -p "$workspace" "$scratch/home" "$scratch/root"
# The workspace's own files (not the bazel-* symlinks of an in-place build).
find "$checkout/tests/consumer" -mindepth 1 -maxdepth 1 ! -name 'bazel-*' -exec cp -R {} "$workspace/" \;

# Point local_repository at the checkout's absolute path.
escaped="$(printf '%s' "$checkout" | sed 's/[\\&|]/\\&/g')"
sed -i "s|^\([[:space:]]*path = \)\"[^\"]*\",|\1\"$escaped\",|" "$workspace/WORKSPACE"
if ! grep -qF "path = \"$checkout\"," "$workspace/WORKSPACE"; then
  echo "consumer_test: could not point local_repository at $checkout:" >&2
  cat "$workspace/WORKSPACE" >&2
  exit 1
fi

export HOME="$scratch/home"
# Bazel treats these as hints that it runs inside a test of its own; the
# nested build must be an ordinary one.
unset TEST_TMPDIR TEST_SRCDIR TEST_WORKSPACE RUNFILES_DIR RUNFILES_MANIFEST_FILE \
      JAVA_RUNFILES PYTHON_RUNFILES BUILD_WORKSPACE_DIRECTORY BUILD_WORKING_DIRECTORY

bazel_in_workspace() {
  (cd "$workspace" && bazel \
      --output_user_root="$scratch/root" \
      --output_base="$scratch/root/base" \
      --batch \
      "$@")
}
# The nested Bazel's messages are shown indented, so that its test summary is
# never taken for the outer one's (scripts/test.sh reads the outer summary).
indent() { sed 's/^/  | /'; }

echo "--- bazel test //... in a copy of tests/consumer/"
bazel_in_workspace test --test_output=all --color=no --curses=no //... 2>&1 | indent

echo "--- bazel run //:app"
if ! output="$(bazel_in_workspace run --color=no --curses=no //:app 2>"$scratch/run.log")"; then
  indent <"$scratch/run.log"
  echo "$output"
  echo "consumer_test: bazel run //:app failed" >&2
  exit 1
fi
indent <"$scratch/run.log"
echo "$output"
if ! grep -q '; map, delayed calls and map_chunks on 2 workers: ok$' <<<"$output"; then
  echo "consumer_test: //:app did not report its checks as ok" >&2
  exit 1
fi
echo "consumer_test: PASSED"
