// Must not compile, with one #error and nothing after it: xjob under
// -std=c++17 (see needs_cxx20_compile_test in tests/BUILD). The code below
// would give hundreds of errors if compilation went on.
#include <ranges>

#include <xjob/parallel.hpp>

int main() {
  auto squares = xjob::parallel(2).map([](int i) { return i * i; }, std::views::iota(0, 4));
  return squares.size() == 4 ? 0 : 1;
}
