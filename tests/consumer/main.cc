// Uses xjob from another workspace through `deps = ["@xjob//:xjob"]`: a map
// over a range, delayed calls, and a chunked map of an xtensor array into
// shared memory, each checked against a plain loop. Exit status 0 when all
// agree.
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <ranges>
#include <vector>

#include <xtensor/xtensor.hpp>

#include <xjob/xjob.hpp>

namespace {

long square(long i) { return i * i; }

}  // namespace

int main() {
  int failures = 0;
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});

  std::vector<long> const squares = par.map([](long i) { return square(i); }, std::views::iota(0L, 1000L));
  for (long i = 0; i < 1000; ++i) {
    if (squares[static_cast<std::size_t>(i)] != i * i) ++failures;
  }

  std::vector<long> const delayed_squares =
      par(std::views::iota(0L, 100L) | std::views::transform([](long i) { return xjob::delayed(square)(i); }));
  for (long i = 0; i < 100; ++i) {
    if (delayed_squares[static_cast<std::size_t>(i)] != i * i) ++failures;
  }

  std::size_t const rows = 4096;
  std::size_t const cols = 8;
  xt::xtensor<double, 2> x = xt::zeros<double>({rows, cols});
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < cols; ++j) x(i, j) = static_cast<double>(i * cols + j);
  }
  xjob::shared_array<double> const y =
      par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; });
  auto const v = y.view<2>();
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < cols; ++j) {
      if (v(i, j) != std::sqrt(x(i, j)) * 2.0 + 1.0) ++failures;
    }
  }

  std::printf("xjob consumer: backends");
  for (auto const& name : xjob::registered_backends()) std::printf(" %s", name.c_str());
  std::printf("; map, delayed calls and map_chunks on %d workers: %s\n", par.n_jobs(),
              failures == 0 ? "ok" : "WRONG");
  return failures == 0 ? 0 : 1;
}
