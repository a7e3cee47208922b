// A program that uses an installed xjob (libxjob.so and its headers) the way
// a CMake or pkg-config user would. Each check is compared with a plain loop;
// it prints one line per check and exits non-zero if any is wrong:
//   - the threads and processes backends are registered (their static
//     initialisers survived linking) and run maps on 2 workers;
//   - delayed calls returning std::pair<int, unsigned __int128> on each
//     backend (through cereal on processes), under whatever -std it is built
//     with (CMake's default -std=gnu++20, or -std=c++20);
//   - map_chunks of an xtensor array into a shared_array, read through view();
//   - a shared_array written through its view by forked workers;
//   - an IPC primitive (ipc::shared_value) updated from worker processes;
//   - process_pool with the fork and spawn start methods (spawn runs this
//     program again, which finds its functions by module and offset).
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <exception>
#include <ranges>
#include <string>
#include <utility>
#include <vector>

#include <xtensor/xtensor.hpp>

#include <xjob/xjob.hpp>

namespace {

using u128 = unsigned __int128;

int failures = 0;

void check(bool ok, std::string const& what) {
  std::printf("%-72s %s\n", what.c_str(), ok ? "ok" : "WRONG");
  if (!ok) ++failures;
}

// The sum of i*i for i in [0, count): beyond 64 bits for large counts.
std::pair<int, u128> sum_of_squares(int idx, long count) {
  u128 sum = 0;
  for (long i = 0; i < count; ++i) sum += static_cast<u128>(i) * static_cast<u128>(i);
  return {idx, sum};
}

int square(int x) { return x * x; }

void check_backend(std::string const& backend) {
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  std::string const on = " on " + backend + " (2 workers)";

  std::vector<long> const squares = par.map([](long i) { return i * i; }, std::views::iota(0L, 1000L));
  bool ok = squares.size() == 1000;
  for (long i = 0; ok && i < 1000; ++i) ok = squares[static_cast<std::size_t>(i)] == i * i;
  check(ok, "map" + on);

  // 2^40 squares summed need more than 64 bits: (n-1)n(2n-1)/6 with n = 10^7
  // is 333333283333335000000.
  long const count = 10'000'000;
  std::vector<std::pair<int, u128>> const sums = par(std::views::iota(1, 5) | std::views::transform([count](int idx) {
                                                       return xjob::delayed(sum_of_squares)(idx, count);
                                                     }));
  u128 const expected = static_cast<u128>(333333283333335ULL) * 1'000'000U;
  ok = sums.size() == 4;
  for (std::size_t k = 0; ok && k < sums.size(); ++k) ok = sums[k].first == static_cast<int>(k) + 1 && sums[k].second == expected;
  check(ok, "delayed calls returning std::pair<int, unsigned __int128>" + on);

  std::size_t const rows = 4096;
  std::size_t const cols = 8;
  xt::xtensor<double, 2> x = xt::zeros<double>({rows, cols});
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t j = 0; j < cols; ++j) x(i, j) = static_cast<double>(i * cols + j);
  }
  xjob::shared_array<double> const y =
      par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; });
  auto const v = y.view<2>();
  ok = y.shape() == std::vector<std::size_t>{rows, cols};
  for (std::size_t i = 0; ok && i < rows; ++i) {
    for (std::size_t j = 0; ok && j < cols; ++j) ok = v(i, j) == std::sqrt(x(i, j)) * 2.0 + 1.0;
  }
  check(ok, "map_chunks of an xtensor array into a shared_array" + on);

  // Workers write rows of a shared_array through its view (in place: forked
  // workers share the mapping), and count their tasks in an IPC value.
  xjob::shared_array<long> table({std::size_t{64}, std::size_t{2}});
  xjob::ipc::shared_value<long> tasks_run;
  std::vector<int> const done = par.map(
      [&table, &tasks_run](int i) {
        auto t = table.view<2>();
        t(static_cast<std::size_t>(i), 0) = i;
        t(static_cast<std::size_t>(i), 1) = static_cast<long>(i) * i;
        tasks_run.atomic().fetch_add(1);
        return i;
      },
      std::views::iota(0, 64));
  auto const t = table.view();
  ok = done.size() == 64;
  for (std::size_t i = 0; ok && i < 64; ++i) ok = t(i, 0) == static_cast<long>(i) && t(i, 1) == static_cast<long>(i * i);
  check(ok, "shared_array written through view() by the workers" + on);
  check(tasks_run.load() == 64, "ipc::shared_value counted every task" + on);
}

void check_pool(xjob::start_method method) {
  xjob::process_pool pool({.processes = 2, .start_method = method});
  std::vector<int> const squares = pool.map(square, std::views::iota(0, 20));
  bool ok = squares.size() == 20;
  for (int i = 0; ok && i < 20; ++i) ok = squares[static_cast<std::size_t>(i)] == i * i;
  auto const pair = pool.submit(sum_of_squares, 7, 100L).get();
  ok = ok && pair.first == 7 && pair.second == 328350;
  check(ok, "process_pool(2) map and submit, start method " + std::string(xjob::to_string(method)));
}

}  // namespace

int main(int argc, char** argv) {
  xjob::init(argc, argv);  // for the spawn start method: a spawned worker never returns from here
  try {
    std::printf("xjob %s (XJOB_VERSION %d.%d.%d), C++ %ld\n", XJOB_VERSION_STRING, XJOB_VERSION_MAJOR,
                XJOB_VERSION_MINOR, XJOB_VERSION_PATCH, static_cast<long>(__cplusplus));
    std::vector<std::string> const backends = xjob::registered_backends();
    std::string names;
    for (auto const& name : backends) names += " " + name;
    auto const has = [&](char const* name) { return std::ranges::find(backends, name) != backends.end(); };
    check(has("sequential") && has("threads") && has("processes"), "registered backends:" + names);
    for (char const* backend : {"threads", "processes"}) {
      if (has(backend)) check_backend(backend);
    }
    check_pool(xjob::start_method::fork);
    check_pool(xjob::start_method::spawn);
  } catch (std::exception const& e) {
    std::fprintf(stderr, "xjob consumer: %s\n", e.what());
    return 1;
  }
  std::printf("xjob consumer: %s\n", failures == 0 ? "all checks ok" : "SOME CHECKS WRONG");
  return failures == 0 ? 0 : 1;
}
