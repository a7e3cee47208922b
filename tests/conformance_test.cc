// The conformance suite: every registered backend must give what the
// sequential backend gives, run each task exactly once, chunk arrays of any
// rank correctly, and report the first failure. A new backend passes this
// before it is called done. Side effects are counted in shared memory, so
// backends whose workers are processes are held to the same rules.
#include <xjob/parallel.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <random>
#include <ranges>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include "test_support.hpp"
#include <xjob/cpu_count.hpp>
#include <xjob/errors.hpp>
#include <xjob/init.hpp>
#include <xjob/map_chunks.hpp>
#include <xjob/random_stream.hpp>

namespace {

// The processes backend also as it runs with each start method, and with
// fresh workers forked at every call (reuse_workers = false).
xjob::backend_factory processes_with(auto adjust) {
  return [adjust](xjob::backend_settings settings) {
    adjust(settings);
    return xjob::make_backend("processes", settings);
  };
}

bool const registered = [] {
  xjob::register_backend("conformance_std_threads", [](xjob::backend_settings const&) {
    return std::make_unique<xjob::testing::std_thread_backend>();
  });
  xjob::register_backend("processes_forked", processes_with([](auto& s) { s.reuse_workers = false; }));
  xjob::register_backend("processes_forkserver",
                         processes_with([](auto& s) { s.start_method = xjob::start_method::forkserver; }));
  xjob::register_backend("processes_spawn", processes_with([](auto& s) { s.start_method = xjob::start_method::spawn; }));
  return true;
}();

// forkserver and spawn workers hold none of the caller's memory, so they
// run only callables without captures; cases built on a capture skip them.
bool runs_closures(std::string const& backend) {
  return backend != "processes_forkserver" && backend != "processes_spawn";
}

std::vector<std::string> backends_under_test() {
  REQUIRE(registered);
  return xjob::registered_backends();
}

std::vector<int> job_counts() {
  std::vector<int> counts = {1, 2, 3};
  if (xjob::cpu_count() > 3) counts.push_back(xjob::cpu_count());
  counts.push_back(-1);
  return counts;
}

std::vector<std::optional<std::size_t>> batch_sizes() { return {std::nullopt, 1, 7}; }

struct not_default_constructible {
  explicit not_default_constructible(int v) : value(v) {}
  int value;
};

// Deterministic, position-dependent values for arrays of any shape.
template <class Array>
void fill_pattern(Array& a) {
  double v = 0.5;
  for (auto& x : a) {
    x = v;
    v = v * 1.37 + 0.11;
    if (v > 1000.0) v -= 997.0;
  }
}

}  // namespace

TEST_CASE("delayed calls give the sequential results in input order") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const n_jobs = GENERATE(from_range(job_counts()));
  auto const batch = GENERATE(from_range(batch_sizes()));
  CAPTURE(backend, n_jobs, batch.value_or(0));
  auto task = [](int i, long scale) { return static_cast<long>(i) * scale - 3; };
  auto calls = std::views::iota(0, 1001) |
               std::views::transform([&](int i) { return xjob::delayed(task)(i, 7L); });
  std::vector<long> const expected = xjob::parallel({.n_jobs = 1})(calls);
  xjob::parallel par({.n_jobs = n_jobs, .backend = backend, .batch_size = batch});
  REQUIRE(par(calls) == expected);
}

TEST_CASE("every task runs exactly once") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  if (!runs_closures(backend)) return;
  auto const n_jobs = GENERATE(from_range(job_counts()));
  auto const batch = GENERATE(from_range(batch_sizes()));
  CAPTURE(backend, n_jobs, batch.value_or(0));
  std::size_t const count = 5003;
  xjob::testing::shared_counters const runs(count);
  xjob::parallel par({.n_jobs = n_jobs, .backend = backend, .batch_size = batch});
  par.map([&runs](std::size_t i) { runs.add(i); }, std::views::iota(std::size_t(0), count));
  for (std::size_t i = 0; i < count; ++i) REQUIRE(runs[i] == 1);
}

TEST_CASE("results of every kind come back: void, bool, strings, types without a default") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  auto const flags = par.map([](int i) { return i % 3 == 0; }, std::views::iota(0, 100));
  for (int i = 0; i < 100; ++i) REQUIRE(flags[static_cast<std::size_t>(i)] == (i % 3 == 0));
  auto const words = par.map([](int i) { return std::string(static_cast<std::size_t>(i % 5), 'x'); },
                             std::views::iota(0, 50));
  REQUIRE(words[7] == "xx");
  auto const boxed = par.map([](int i) { return not_default_constructible(i * 2); }, std::views::iota(0, 50));
  REQUIRE(boxed[21].value == 42);
  if (!runs_closures(backend)) return;
  xjob::testing::shared_counters const sum(1);
  par.map([&sum](int i) { sum.add(0, i); }, std::views::iota(0, 100));
  REQUIRE(sum[0] == 4950);
}

TEST_CASE("an empty list of tasks is no work") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  REQUIRE(par.map([](int i) { return i; }, std::views::iota(0, 0)).empty());
}

TEST_CASE("the first task to throw stops the call and is reported with its index, type and message") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  if (!runs_closures(backend)) return;
  auto const n_jobs = GENERATE(from_range(job_counts()));
  CAPTURE(backend, n_jobs);
  xjob::testing::shared_counters const ran(1);
  xjob::parallel par({.n_jobs = n_jobs, .backend = backend});
  auto body = [&ran](int i) {
    if (i == 10) throw std::out_of_range("task ten is out of range");
    ran.add(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    return i;
  };
  try {
    (void)par.map(body, std::views::iota(0, 300));
    FAIL("no exception");
  } catch (xjob::task_error const& e) {
    REQUIRE(e.task_index() == 10);
    REQUIRE(e.type_name() == "std::out_of_range");
    REQUIRE(e.message() == "task ten is out of range");
    // The exception object itself cannot leave a worker process.
    if (par.runs_out_of_process()) {
      REQUIRE(e.original() == nullptr);
    } else {
      REQUIRE_THROWS_AS(e.rethrow_original(), std::out_of_range);
    }
  }
  // The rest was cancelled: far from all 299 other tasks ran.
  REQUIRE(ran[0] < 150);
  if (backend == "sequential" || par.n_jobs() == 1) REQUIRE(ran[0] == 10);
}

TEST_CASE("after a failure the same parallel object runs the next call normally") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  REQUIRE_THROWS_AS(par.map([](int i) { return i == 3 ? throw std::runtime_error("x") : i; }, std::views::iota(0, 9)),
                    xjob::task_error);
  REQUIRE(par.map([](int i) { return i; }, std::views::iota(0, 9)).size() == 9);
}

// Numbers drawn from xjob::random_stream depend on (seed, key) alone, so a
// Monte Carlo map gives the sequential result bit for bit on every backend.
TEST_CASE("a Monte Carlo map on random streams gives the sequential bits") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const n_jobs = GENERATE(2, 3);
  CAPTURE(backend, n_jobs);
  auto const estimate = [](int task) {  // no captures: also forkserver and spawn
    xjob::random_stream g(2026, static_cast<std::uint64_t>(task));
    std::uniform_real_distribution<double> unit;
    int inside = 0;
    for (int i = 0; i < 1000; ++i) {
      double const x = unit(g);
      double const y = unit(g);
      inside += x * x + y * y <= 1.0 ? 1 : 0;
    }
    return 4.0 * inside / 1000.0 + 1e-3 * std::normal_distribution<double>()(g);
  };
  std::vector<double> const expected = xjob::parallel({.n_jobs = 1}).map(estimate, std::views::iota(0, 300));
  std::vector<double> const got =
      xjob::parallel({.n_jobs = n_jobs, .backend = backend}).map(estimate, std::views::iota(0, 300));
  REQUIRE(got == expected);  // exact: the same bits
}

TEST_CASE("map_chunks matches the sequential result for ranks 1 to 3, odd chunk sizes and every axis") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const n_jobs = GENERATE(1, 2, 3, -1);
  auto const chunk = GENERATE(as<std::optional<std::size_t>>{}, std::nullopt, 1, 3, 7);
  CAPTURE(backend, n_jobs, chunk.value_or(0));
  xjob::parallel par({.n_jobs = n_jobs, .backend = backend});
  auto f = [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; };

  xt::xtensor<double, 1> r1 = xt::zeros<double>({1001});
  xt::xtensor<double, 2> r2 = xt::zeros<double>({97, 13});
  xt::xarray<double> r3 = xt::zeros<double>({11, 5, 9});
  fill_pattern(r1);
  fill_pattern(r2);
  fill_pattern(r3);

  for (std::size_t axis = 0; axis < 1; ++axis) {
    auto y = par.map_chunks(r1, f, xjob::chunking{.axis = axis, .size = chunk});
    REQUIRE(xt::allclose(y.view(), xt::sqrt(r1) * 2.0 + 1.0, 1e-15, 0.0));
  }
  for (std::size_t axis = 0; axis < 2; ++axis) {
    auto y = par.map_chunks(r2, f, xjob::chunking{.axis = axis, .size = chunk});
    REQUIRE(y.shape() == std::vector<std::size_t>{97, 13});
    REQUIRE(xt::allclose(y.view(), xt::sqrt(r2) * 2.0 + 1.0, 1e-15, 0.0));
  }
  for (std::size_t axis = 0; axis < 3; ++axis) {
    auto y = par.map_chunks(r3, f, xjob::chunking{.axis = axis, .size = chunk});
    REQUIRE(xt::allclose(y.view(), xt::sqrt(r3) * 2.0 + 1.0, 1e-15, 0.0));
  }
}

// f(in, out, chunk_info): each chunk's index, offset, extent and axis, on
// every backend (warm workers, forkserver and spawn included: f has no
// captures) and along either axis.
TEST_CASE("map_chunks tells an f that asks where its chunk lies") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const axis = GENERATE(std::size_t(0), std::size_t(1));
  CAPTURE(backend, axis);
  xt::xtensor<double, 2> const x = xt::zeros<double>({37, 23});
  xt::xtensor<double, 2> y = xt::zeros<double>({37, 23});
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  par.map_chunks(
      x,
      [](auto const& in, auto&& out, xjob::chunk_info const& c) {
        bool const extent_right = c.extent == in.shape()[c.axis];
        for (std::size_t i = 0; i < in.shape()[0]; ++i)
          for (std::size_t j = 0; j < in.shape()[1]; ++j)
            out(i, j) = static_cast<double>(c.offset + (c.axis == 0 ? i : j)) + 1000.0 * static_cast<double>(c.index) +
                        (extent_right ? 0.0 : 1e6);
      },
      y, xjob::chunking{.axis = axis, .size = 5});
  for (std::size_t i = 0; i < 37; ++i)
    for (std::size_t j = 0; j < 23; ++j) {
      std::size_t const along = axis == 0 ? i : j;
      CAPTURE(i, j);
      REQUIRE(y(i, j) == static_cast<double>(along + 1000 * (along / 5)));
    }
}

TEST_CASE("map_chunks writes every element exactly once") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const n_jobs = GENERATE(2, 3);
  auto const chunk = GENERATE(as<std::optional<std::size_t>>{}, std::nullopt, 1, 5);
  auto const axis = GENERATE(std::size_t(0), std::size_t(1), std::size_t(2));
  CAPTURE(backend, n_jobs, chunk.value_or(0), axis);
  xjob::parallel par({.n_jobs = n_jobs, .backend = backend});
  xt::xtensor<int, 3> const x = xt::zeros<int>({23, 6, 17});
  xjob::shared_array<int> counts({23, 6, 17});
  par.map_chunks(x, [](auto const&, auto&& out) { out += 1; }, counts, xjob::chunking{.axis = axis, .size = chunk});
  for (int c : counts) REQUIRE(c == 1);
}

TEST_CASE("map_chunks of an empty array calls nothing and keeps the shape") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  if (!runs_closures(backend)) return;
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  xt::xtensor<double, 2> const empty = xt::zeros<double>({0, 5});
  xjob::testing::shared_counters const calls(1);
  auto y = par.map_chunks(empty, [&calls](auto const&, auto&&) { calls.add(0); });
  REQUIRE(calls[0] == 0);
  REQUIRE(y.shape() == std::vector<std::size_t>{0, 5});
  REQUIRE(y.size() == 0);
}

TEST_CASE("a throwing chunk is reported with its chunk index") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  if (!runs_closures(backend)) return;
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  xt::xtensor<double, 1> const x = xt::ones<double>({1000});
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      (void)par.map_chunks(
          x,
          [&x](auto const& in, auto&& out) {
            if (&in(0) == &x(500)) throw std::invalid_argument("bad chunk");
            out = in;
          },
          xjob::chunking{.size = 100}),
      xjob::task_error, "task 5 threw std::invalid_argument: bad chunk");
}

int main(int argc, char** argv) {
  xjob::init(argc, argv);  // for the forkserver and spawn start methods
  return Catch::Session().run(argc, argv);
}
