#!/usr/bin/env bash
# xjob through CMake and pkg-config, as a user outside Bazel gets it:
#   1. configure, build (-j2) and install the checkout's CMakeLists.txt into a
#      temporary prefix (and check that BUILD_SHARED_LIBS=OFF is refused);
#   2. build tests/cmake_consumer/project/ (find_package(xjob COMPONENTS
#      mpi), xjob::xjob and xjob::mpi, CMake's defaults: -std=gnu++20, no
#      optimisation) against that prefix, run app (it checks itself; see
#      app.cc) and mpi_app under mpirun -np 2;
#   3. build app.cc with `g++ -std=c++20 app.cc $(pkg-config --cflags --libs xjob)`
#      (and -Wall -Wextra -Werror) and run it;
#   4. every C++ block of README.md, written as a complete program
#      readme_NN.cc by scripts/readme_examples.py, built both ways and run
#      (those it marks compile-only are built, not run).
# The versions in version.hpp, xjobConfigVersion.cmake, xjob.pc and the
# running app must agree. Temporary folders are removed on every path.
# The installed libxjob.so is found through an RPATH: CMake adds one to the
# consumer's build-tree binaries by itself; the pkg-config builds pass
# -Wl,-rpath,<libdir> (a user installing into a system prefix needs neither).
# Run by `bazel test //tests/cmake_consumer:cmake_consumer_test` (tagged
# "local": no sandbox), or directly: tests/cmake_consumer/cmake_consumer_test.sh.
# Environment: XJOB_README_EXAMPLES, another extractor script to use instead
# of scripts/readme_examples.py (same arguments: README.md OUTDIR).
set -euo pipefail

# The checkout's root (tests/find_checkout.sh).
source "$(dirname "${BASH_SOURCE[0]}")/../find_checkout.sh"
checkout="$(find_checkout cmake_consumer_test)"
project="$checkout/tests/cmake_consumer/project"
if [[ ! -f "$checkout/CMakeLists.txt" || ! -f "$project/CMakeLists.txt" ]]; then
  echo "cmake_consumer_test: $checkout is not an xjob checkout with CMakeLists.txt and tests/cmake_consumer/project/" >&2
  exit 1
fi
for tool in cmake pkg-config g++ python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "cmake_consumer_test: $tool is not installed (bash scripts/setup.sh installs it)" >&2
    exit 1
  fi
done
echo "xjob checkout: $checkout"

# Everything goes under one scratch folder, removed on every path.
scratch="$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/cmake_consumer.XXXXXX")"
cleanup() { rm -rf "$scratch"; }
trap cleanup EXIT
export HOME="$scratch/home"   # CMake's user package registry; unset in a test
mkdir -p "$HOME"
prefix="$scratch/prefix"
jobs=2

indent() { sed 's/^/  | /'; }
fail() {
  echo "cmake_consumer_test: $*" >&2
  exit 1
}
# Runs a command, its output in $scratch/step.log; on failure shows it and
# stops. step shows the output also on success, quiet_step does not.
quiet_step() {
  local what="$1"
  shift
  echo "--- $what"
  if ! "$@" >"$scratch/step.log" 2>&1; then
    indent <"$scratch/step.log"
    fail "$what failed: $*"
  fi
}
step() {
  quiet_step "$@"
  indent <"$scratch/step.log"
}

# The version, from its one source.
version="$(sed -n 's/^#define XJOB_VERSION_STRING "\(.*\)"$/\1/p' "$checkout/include/xjob/version.hpp")"
[[ -n "$version" ]] || fail "cannot read XJOB_VERSION_STRING from include/xjob/version.hpp"
echo "xjob version (include/xjob/version.hpp): $version"

# The sources CMakeLists.txt compiles are those of the Bazel build.
bazel_sources="$(grep -oE '"src/[^"]+\.cc"' "$checkout/BUILD" | tr -d '"' | sort)"
cmake_sources="$(grep -oE '^[[:space:]]*src/[^[:space:])]+\.cc' "$checkout/CMakeLists.txt" | tr -d ' ' | sort)"
if [[ "$bazel_sources" != "$cmake_sources" ]]; then
  diff <(echo "$bazel_sources") <(echo "$cmake_sources") | indent
  fail "the .cc files of BUILD (<) and CMakeLists.txt (>) differ: list each source in both"
fi
echo "CMakeLists.txt compiles the $(wc -l <<<"$bazel_sources") .cc files of BUILD"

# 1. Build and install xjob.
echo "--- cmake -DBUILD_SHARED_LIBS=OFF must be refused"
if cmake -S "$checkout" -B "$scratch/static-build" -DBUILD_SHARED_LIBS=OFF >"$scratch/static.log" 2>&1; then
  indent <"$scratch/static.log"
  fail "configuring with BUILD_SHARED_LIBS=OFF succeeded; it must be refused (the backends' registrations would be dropped)"
fi
grep -q 'BUILD_SHARED_LIBS=OFF is not supported' "$scratch/static.log" ||
  { indent <"$scratch/static.log"; fail "BUILD_SHARED_LIBS=OFF failed without xjob's message"; }
echo "  | refused, with xjob's message"
rm -rf "$scratch/static-build"

start=$SECONDS
quiet_step "cmake configure xjob" cmake -S "$checkout" -B "$scratch/build" -DCMAKE_INSTALL_PREFIX="$prefix"
quiet_step "cmake --build xjob (-j$jobs)" cmake --build "$scratch/build" -j"$jobs"
quiet_step "cmake --install xjob" cmake --install "$scratch/build"
echo "xjob built and installed in $((SECONDS - start)) s"

pc_file="$(find "$prefix" -name xjob.pc -path '*/pkgconfig/*' | head -n 1)"
config_file="$(find "$prefix" -name xjobConfigVersion.cmake | head -n 1)"
[[ -n "$pc_file" ]] || fail "no xjob.pc installed under $prefix"
[[ -n "$config_file" ]] || fail "no xjobConfigVersion.cmake installed under $prefix"
libdir="$(dirname "$(dirname "$pc_file")")"
[[ -e "$libdir/libxjob.so" ]] || fail "no libxjob.so in $libdir beside pkgconfig/xjob.pc"
grep -q "set(PACKAGE_VERSION \"$version\")" "$config_file" ||
  fail "xjobConfigVersion.cmake does not carry version $version"
pc_version="$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --modversion xjob)"
[[ "$pc_version" == "$version" ]] || fail "xjob.pc says version $pc_version, version.hpp $version"
echo "installed: $libdir/libxjob.so ($(readelf -d "$libdir/libxjob.so" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p')), version $version in xjobConfigVersion.cmake and xjob.pc"

# The README's C++ blocks as programs.
readme_dir="$scratch/readme"
mkdir -p "$readme_dir"
extractor="${XJOB_README_EXAMPLES:-$checkout/scripts/readme_examples.py}"
[[ -f "$extractor" ]] || fail "$extractor does not exist: it writes the README's C++ blocks as programs"
quiet_step "$(basename "$extractor") README.md" python3 "$extractor" "$checkout/README.md" "$readme_dir"
sed -e "s|$readme_dir/||" -e "s|$checkout/||g" "$scratch/step.log" | indent
shopt -s nullglob
readme_programs=("$readme_dir"/readme_*.cc)
shopt -u nullglob
[[ ${#readme_programs[@]} -gt 0 ]] || fail "$extractor wrote no readme_*.cc into $readme_dir"
# Its lines: OUTDIR/readme_NN.cc <tab> README.md:LINE <tab> fragment|complete
# <tab> run|compile-only. A compile-only block is built, never run.
compile_only=" $(awk -F '\t' '$4 == "compile-only" { n = split($1, p, "/"); sub(/\.cc$/, "", p[n]); print p[n] }' \
  "$scratch/step.log" | tr '\n' ' ')"
echo "README programs: ${#readme_programs[@]} (compile-only:${compile_only% })"

# Runs a program in a fresh folder of its own (some write files), with a
# time limit; prints a line, and its output if it fails. Returns its status.
# A compile-only README program is not run.
run_program() {
  local label="$1" binary="$2" dir status=0
  if [[ "$compile_only" == *" $(basename "$binary") "* ]]; then
    echo "  $label: built (compile-only: not run)"
    return 0
  fi
  dir="$(mktemp -d "$scratch/run.XXXXXX")"
  local t0=$SECONDS
  # TEST_TMPDIR: the README harness changes to it (files a block writes).
  (cd "$dir" && TEST_TMPDIR="$dir" timeout 300 "$binary") >"$dir.log" 2>&1 || status=$?
  if [[ $status -eq 0 ]]; then
    echo "  $label: ran ($((SECONDS - t0)) s)"
  else
    echo "  $label: FAILED with status $status; its output:"
    tail -n 40 "$dir.log" | indent
  fi
  rm -rf "$dir" "$dir.log"
  return "$status"
}

failures=0

# 2. CMake consumer: find_package(xjob) with CMake's defaults (-std=gnu++20).
# Unix Makefiles (CMake's default here) for make's -k below.
start=$SECONDS
quiet_step "cmake configure the consumer project" \
  cmake -G "Unix Makefiles" -S "$project" -B "$scratch/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
  -DXJOB_README_DIR="$readme_dir"
grep -q "xjob $version from" "$scratch/step.log" || fail "find_package(xjob) did not report version $version"
quiet_step "cmake --build the consumer project: app" cmake --build "$scratch/consumer" --target app --verbose
grep -E -- ' -c [^ ]*app\.cc$' "$scratch/step.log" | indent
grep -q -- '-std=gnu++20' "$scratch/step.log" || fail "the consumer was not compiled with CMake's default -std=gnu++20"
echo "consumer app built in $((SECONDS - start)) s"
echo "--- CMake consumer (-std=gnu++20): app"
if ! output="$("$scratch/consumer/app" 2>&1)"; then
  indent <<<"$output"
  fail "the CMake-built app failed"
fi
indent <<<"$output"
grep -q "^xjob $version " <<<"$output" || fail "the CMake-built app does not report xjob $version"
grep -q '^xjob consumer: all checks ok$' <<<"$output" || fail "the CMake-built app did not report its checks as ok"
echo "--- CMake consumer: mpi_app (xjob::mpi) under mpirun -np 2"
quiet_step "cmake --build the consumer project: mpi_app" cmake --build "$scratch/consumer" --target mpi_app
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
# A short TMPDIR: Bazel's exceeds the Unix socket path limit of Open MPI's session directory.
if ! output="$(TMPDIR=/tmp timeout 120 mpirun --oversubscribe --bind-to none -np 2 "$scratch/consumer/mpi_app" 2>&1)"; then
  indent <<<"$output"
  fail "the CMake-built mpi_app failed under mpirun"
fi
indent <<<"$output"
grep -q '^xjob mpi consumer: all checks ok on 2 ranks$' <<<"$output" || fail "mpi_app did not report its checks as ok"
echo "--- CMake consumer (-std=gnu++20): the README programs (-j$jobs, going on after errors)"
start=$SECONDS
if ! cmake --build "$scratch/consumer" -j"$jobs" -- -k >"$scratch/readme-cmake.log" 2>&1; then
  grep -E 'error|Error' "$scratch/readme-cmake.log" | head -n 80 | indent
fi
echo "README programs built in $((SECONDS - start)) s"
for source in "${readme_programs[@]}"; do
  name="$(basename "$source" .cc)"
  if [[ -x "$scratch/consumer/$name" ]]; then
    run_program "$name (cmake)" "$scratch/consumer/$name" || failures=$((failures + 1))
  else
    echo "  $name (cmake): FAILED to build (errors above)"
    failures=$((failures + 1))
  fi
done

# 3. pkg-config: plain g++ -std=c++20.
pkg_flags="$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --cflags --libs xjob)"
echo "--- pkg-config --cflags --libs xjob: $pkg_flags"
pc_bin="$scratch/pkg-config-bin"
mkdir -p "$pc_bin"
# The app, with warnings as errors: xjob's headers come through -I here, not
# -isystem, so a warning in them would reach every pkg-config user.
# shellcheck disable=SC2086  # pkg_flags is a list of flags
step "g++ -std=c++20 -Wall -Wextra -Werror app.cc \$(pkg-config --cflags --libs xjob)" \
  g++ -std=c++20 -Wall -Wextra -Werror "$project/app.cc" $pkg_flags -Wl,-rpath,"$libdir" -o "$pc_bin/app"
echo "--- pkg-config (-std=c++20): app"
if ! output="$("$pc_bin/app" 2>&1)"; then
  indent <<<"$output"
  fail "the pkg-config-built app failed"
fi
indent <<<"$output"
grep -q '^xjob consumer: all checks ok$' <<<"$output" || fail "the pkg-config-built app did not report its checks as ok"

echo "--- pkg-config (-std=c++20): the README programs, compiled $jobs at a time"
# One compile per program; a block that uses OpenMP (the README's custom
# backend) gets -fopenmp, and one that uses xjob::mpi gets xjob-mpi.pc's
# flags, as its user would add.
compile_one() {
  local source="$1" name extra=() libs=()
  name="$(basename "$source" .cc)"
  grep -qE '#[[:space:]]*pragma[[:space:]]+omp|<omp\.h>|omp_get_' "$source" && extra=(-fopenmp)
  # shellcheck disable=SC2206
  grep -qF '<xjob/mpi.hpp>' "$source" && libs=($PKG_MPI_FLAGS)
  # shellcheck disable=SC2086
  if g++ -std=c++20 "${extra[@]}" "$source" "${libs[@]}" $PKG_FLAGS -Wl,-rpath,"$LIBDIR" -o "$PC_BIN/$name" \
      >"$PC_BIN/$name.log" 2>&1; then
    echo "  $name: compiled"
  else
    echo "  $name: FAILED to compile:"
    sed 's/^/  | /' "$PC_BIN/$name.log" | head -n 60
    return 1
  fi
}
export -f compile_one
PKG_MPI_FLAGS="$(PKG_CONFIG_PATH="$libdir/pkgconfig" pkg-config --libs xjob-mpi)" ||
  fail "pkg-config finds no xjob-mpi.pc in $libdir/pkgconfig"
export PKG_FLAGS="$pkg_flags" PKG_MPI_FLAGS LIBDIR="$libdir" PC_BIN="$pc_bin"
start=$SECONDS
# shellcheck disable=SC2016  # $1 is compile_one's, expanded by the inner bash
printf '%s\0' "${readme_programs[@]}" | xargs -0 -n 1 -P "$jobs" bash -c 'compile_one "$1"' _ || true
echo "README programs compiled in $((SECONDS - start)) s"
for source in "${readme_programs[@]}"; do
  name="$(basename "$source" .cc)"
  if [[ -x "$pc_bin/$name" ]]; then
    run_program "$name (pkg-config)" "$pc_bin/$name" || failures=$((failures + 1))
  else
    failures=$((failures + 1))   # its compile errors are above
  fi
done

if [[ $failures -gt 0 ]]; then
  fail "$failures README program(s) failed to build or run (see above)"
fi
echo "cmake_consumer_test: PASSED"
