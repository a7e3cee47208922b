// Must not compile: reduce_chunks used with <xjob/parallel.hpp> alone, which
// parses no xtensor; the error says which header to include.
#include <functional>

#include <xtensor/xtensor.hpp>

#include <xjob/parallel.hpp>

int main() {
  xt::xtensor<double, 2> x = xt::ones<double>({8, 4});
  double const sum = xjob::parallel(2).reduce_chunks(x, [](auto const& chunk) { return chunk(0, 0); }, 0.0, std::plus<>{});
  return sum == 8.0 ? 0 : 1;
}
