// Must not compile: a stream of task results that cannot come back from a
// worker process (see transfer_compile_test in tests/BUILD).
#include <functional>
#include <ranges>

#include <xjob/parallel.hpp>

int main() {
  auto callbacks = xjob::parallel(2).map([](int i) { return std::function<int()>([i] { return i; }); },
                                         std::views::iota(0, 4), xjob::return_as_generator);
  int sum = 0;
  for (auto const& f : callbacks) sum += f();
  return sum;
}
