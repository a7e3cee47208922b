// Must not compile: map_chunks used with <xjob/parallel.hpp> alone, which
// parses no xtensor; the error says which header to include.
#include <xtensor/xtensor.hpp>

#include <xjob/parallel.hpp>

int main() {
  xt::xtensor<double, 2> x = xt::ones<double>({8, 4});
  xt::xtensor<double, 2> y = xt::zeros<double>({8, 4});
  xjob::parallel(2).map_chunks(x, [](auto const& in, auto&& out) { out = in; }, y);
  return y(0, 0) == 1.0 ? 0 : 1;
}
