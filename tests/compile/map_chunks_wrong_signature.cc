// Must not compile, with one error: a map_chunks callable whose parameters
// cannot bind to the chunks (xt::xtensor<double, 2>& instead of chunk views).
#include <xtensor/xtensor.hpp>

#include <xjob/map_chunks.hpp>

int main() {
  xt::xtensor<double, 2> x = xt::ones<double>({8, 4});
  auto y = xjob::parallel(2).map_chunks(x, [](xt::xtensor<double, 2>& in, xt::xtensor<double, 2>& out) { out = in; });
  return y.size() == 32 ? 0 : 1;
}
