#!/bin/bash
# A task result that cannot leave a worker process is a compile-time error
# whose message says why and what to do; a transferable one compiles. Runs
# the system compiler on tests/compile/*.cc with xjob's public headers.
set -euo pipefail
root="${TEST_SRCDIR}/${TEST_WORKSPACE}"
compile() { g++ -std=c++20 -fsyntax-only -I "$root/include" "$@"; }

compile "$root/tests/compile/transferable_result.cc" || { echo "FAIL: the control case does not compile"; exit 1; }

if compile "$root/tests/compile/untransferable_result.cc" 2> errors.txt; then
  echo "FAIL: a std::function result compiled"; exit 1
fi
for expected in "this task's result type cannot come back from a worker process" \
                "give the type a default constructor and a cereal serialize(Archive&) member" \
                "xjob::in_process_only"; do
  grep -q "$expected" errors.txt || { echo "FAIL: the error does not say: $expected"; head -c 3000 errors.txt; exit 1; }
done
echo "PASS: untransferable results are refused at compile time with a message that says what to do"
