// Must not compile: a lambda with captures submitted to a process_pool, whose
// workers started before the lambda was made (see process_compile_test in
// tests/BUILD).
#include <xjob/process_pool.hpp>

int main() {
  int state = 3;
  xjob::process_pool pool(1);
  return pool.submit([state](int k) { return state + k; }, 1).get();
}
