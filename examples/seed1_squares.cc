// SEEDS.md example 1: squares into a 20x2 array, twice.
//   (a) a process pool's map of make_square over 0..19 returns (i, [i, i*i])
//       and the main process writes each row into a 20x2 array
//       (ProcessPoolExecutor(2).map(make_square, range(20)));
//   (b) the workers write S[i] = [i, i*i] straight into a 20x2 int32 array
//       in shared memory whose row 0 was pre-set to [10, 20] and is left
//       alone (sharedctypes.RawArray wrapped as a NumPy array).
// The article needed a "very ugly" global for the shared buffer and a worker
// lifted to module level for pickling; here the worker is a lambda that
// captures the array by reference.
//   bazel run //examples:seed1_squares
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ranges>
#include <set>
#include <vector>

#include <xtensor/xtensor.hpp>

#include <xjob/process_pool.hpp>
#include <xjob/xjob.hpp>

namespace {

// What make_square returns: the article's (i, [i, i*i]), plus the pid of the
// worker that computed it. Trivially copyable, so it travels as its bytes.
struct square_row {
  int i = 0;
  std::array<std::int32_t, 2> row{};
  int pid = 0;
};

square_row make_square(int i) { return {i, {i, i * i}, static_cast<int>(getpid())}; }

// A 2-D int array as NumPy prints it: right-aligned to the widest element.
template <class Array>
void print_array(Array const& a) {
  int width = 1;
  for (auto v : a) width = std::max(width, std::snprintf(nullptr, 0, "%d", static_cast<int>(v)));
  auto const rows = a.shape()[0];
  auto const cols = a.shape()[1];
  for (std::size_t r = 0; r < rows; ++r) {
    std::printf("%s[", r == 0 ? "[" : " ");
    for (std::size_t c = 0; c < cols; ++c) std::printf("%s%*d", c == 0 ? "" : " ", width, static_cast<int>(a(r, c)));
    std::printf("]%s\n", r + 1 == rows ? "]" : "");
  }
}

}  // namespace

int main() {
  constexpr int n = 20;
  std::printf("main process: pid %d\n\n", static_cast<int>(getpid()));

  // (a) Results come back to the main process, which fills the array.
  std::printf("(a) process_pool(2).map(make_square, 0..19); the main process writes each row:\n");
  xt::xtensor<std::int32_t, 2> squares = xt::zeros<std::int32_t>({std::size_t(n), std::size_t(2)});
  std::set<int> pids;
  {
    xjob::process_pool pool({.processes = 2});
    for (square_row const& r : pool.map(make_square, std::views::iota(0, n))) {
      squares(r.i, 0) = r.row[0];
      squares(r.i, 1) = r.row[1];
      pids.insert(r.pid);
    }
  }
  print_array(squares);
  std::printf("computed by %zu worker process(es), none of them the main process: %s\n\n", pids.size(),
              pids.contains(static_cast<int>(getpid())) ? "no" : "yes");

  // (b) The workers write into shared memory; nothing comes back but the
  // rows they wrote. Row 0 is pre-set and must survive.
  std::printf("(b) parallel({.n_jobs = 2, .backend = \"processes\"}).map over 1..19, workers writing S[i] in place:\n");
  xjob::shared_array<std::int32_t> shared({std::size_t(n), std::size_t(2)});
  auto s = shared.view<2>();
  s(0, 0) = 10;
  s(0, 1) = 20;
  xjob::parallel({.n_jobs = 2, .backend = "processes"})
      .map(
          [&shared](int i) {
            auto S = shared.view<2>();
            S(i, 0) = i;
            S(i, 1) = i * i;
          },
          std::views::iota(1, n));
  print_array(s);
  std::printf("row 0 preserved: %s\n", s(0, 0) == 10 && s(0, 1) == 20 ? "yes" : "no");
}
