// Must not compile: a lambda with captures for a process that a start method
// other than fork may start (see process_compile_test in tests/BUILD).
#include <xjob/process.hpp>

int main() {
  int state = 3;
  xjob::process p(xjob::start_method::spawn, [state](int k) { return state + k; }, 1);
  return p.pid() == -1 ? 0 : 1;
}
