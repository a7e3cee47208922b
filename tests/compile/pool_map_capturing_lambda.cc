// Must not compile: a lambda with captures mapped over a process_pool, whose
// workers started before the lambda was made (see process_compile_test in
// tests/BUILD).
#include <vector>

#include <xjob/process_pool.hpp>

int main() {
  int state = 3;
  xjob::process_pool pool(1);
  auto results = pool.map([state](int k) { return state + k; }, std::vector<int>{1, 2});
  return results.size() == 2 ? 0 : 1;
}
