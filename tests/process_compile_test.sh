#!/bin/bash
# An xjob::process given a start method (which may be forkserver or spawn),
# and a process_pool (whose workers started before the call),
# refuses, at compile time, a lambda with captures, with a message that says
# what to do; plain functions, captureless lambdas, and any closure without a
# start method (fork) compile. Runs the system compiler on tests/compile/*.cc
# with xjob's public headers, as transfer_compile_test.sh does.
set -euo pipefail
root="${TEST_SRCDIR}/${TEST_WORKSPACE}"
compile() { g++ -std=c++20 -fsyntax-only -I "$root/include" "$@"; }

compile "$root/tests/compile/process_plain_function.cc" || { echo "FAIL: the control case does not compile"; exit 1; }

if compile "$root/tests/compile/process_capturing_lambda.cc" 2> errors.txt; then
  echo "FAIL: a capturing lambda compiled for start_method::spawn"; exit 1
fi
for expected in "this function cannot run in a worker process that was started before the call" \
                "pass a plain function or a lambda without captures" \
                "xjob::process with the fork start method"; do
  grep -q "$expected" errors.txt || { echo "FAIL: the error does not say: $expected"; head -c 3000 errors.txt; exit 1; }
done
# The same refusal for a process_pool's tasks.
if compile "$root/tests/compile/pool_capturing_lambda.cc" 2> pool_errors.txt; then
  echo "FAIL: a capturing lambda compiled as a process_pool task"; exit 1
fi
for expected in "this function cannot run in a worker process that was started before the call" \
                "pass a plain function or a lambda without captures"; do
  grep -q "$expected" pool_errors.txt || { echo "FAIL: the pool's error does not say: $expected"; head -c 3000 pool_errors.txt; exit 1; }
done
echo "PASS: a capturing lambda for a process that may be spawned is refused at compile time with a message that says what to do"
