// Must compile: the control case of transfer_compile_test (tests/BUILD), with the same
// headers and flags.
#include <map>
#include <ranges>
#include <string>

#include <xjob/parallel.hpp>

int main() {
  auto results = xjob::parallel(2).map([](int i) { return std::map<std::string, int>{{"i", i}}; },
                                       std::views::iota(0, 4));
  return results.size() == 4 ? 0 : 1;
}
