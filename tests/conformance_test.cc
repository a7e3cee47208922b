// The conformance suite: every registered backend must give what the
// sequential backend gives, run each task exactly once, chunk arrays of any
// rank correctly, and report the first failure. A new backend passes this
// before it is called done. Side effects are counted in shared memory, so
// backends whose workers are processes are held to the same rules.
#include <xjob/parallel.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <random>
#include <ranges>
#include <stop_token>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <xtensor/xarray.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include "test_support.hpp"
#include <xjob/cancellation.hpp>
#include <xjob/cpu_count.hpp>
#include <xjob/errors.hpp>
#include <xjob/init.hpp>
#include <xjob/map_chunks.hpp>
#include <xjob/random_stream.hpp>
#include <xjob/reduce_chunks.hpp>
#include <xjob/testing/conformance.hpp>

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

// The resumable-output case. Its writers run as programs of their own,
// and its f
// logs each chunk it finished to the file XJOB_TEST_CHUNK_LOG names: f has
// no captures, so every start method runs it.
constexpr std::size_t resume_rows = 240;
constexpr std::size_t resume_cols = 16;
constexpr std::size_t resume_chunk_rows = 4;  // 60 chunks
constexpr std::size_t resume_chunks = resume_rows / resume_chunk_rows;

void log_chunk(std::size_t index) {
  char const* path = std::getenv("XJOB_TEST_CHUNK_LOG");
  if (path == nullptr) return;
  int const fd = ::open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  std::string const line = std::to_string(index) + "\n";
  (void)!::write(fd, line.data(), line.size());
  ::close(fd);
}

// 10 ms a chunk (a chunk every 5 ms with 2 workers): long against the few
// ms a write-back and journal record take, also under ASan on 2 busy vCPUs,
// so that the chunks finished but not yet journaled stay few.
constexpr auto slow_affine = [](auto const& in, auto&& out, xjob::chunk_info const& c) {
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  out = 2.0 * in + 1.0;
  log_chunk(c.index);
};

xt::xtensor<double, 2> resume_input() {
  xt::xtensor<double, 2> x = xt::zeros<double>({resume_rows, resume_cols});
  fill_pattern(x);
  return x;
}

void write_resumable(std::string path, std::string backend) {
  xjob::parallel par({.n_jobs = 2, .backend = backend, .batch_size = 1});
  auto out = xjob::shared_array<double>::resume_npy(path, {resume_rows, resume_cols});
  par.map_chunks(resume_input(), slow_affine, out, {.axis = 0, .size = resume_chunk_rows});
}

// A writer is this program run afresh (xjob::init and all, so that every
// start method works there as in a user's batch job) with
// --resumable-writer <path> <backend>.
pid_t start_writer(std::filesystem::path const& path, std::string const& backend) {
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  std::string flag = "--resumable-writer";
  std::string target = path.string();
  std::string name = backend;
  char* argv[] = {self.data(), flag.data(), target.data(), name.data(), nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, environ) == 0);
  return pid;
}

int wait_for_writer(pid_t pid) {
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) REQUIRE(errno == EINTR);
  return status;
}

std::vector<std::size_t> logged_chunks(std::filesystem::path const& log) {
  std::vector<std::size_t> chunks;
  std::ifstream in(log);
  for (std::size_t c = 0; in >> c;) chunks.push_back(c);
  return chunks;
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

// Reductions combine in a tree fixed by the data's size (see
// detail/reduction.hpp): the same bits on every backend, n_jobs and batch.
TEST_CASE("map_reduce gives the sequential bits, for any n_jobs and batch size") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const n_jobs = GENERATE(from_range(job_counts()));
  auto const batch = GENERATE(from_range(batch_sizes()));
  auto const count = GENERATE(0, 1, 6, 4097, 100'003);
  CAPTURE(backend, n_jobs, batch.value_or(0), count);
  auto const term = [](int i) { return 1.0 / (1.0 + i) * (i % 3 == 0 ? -1.0 : 1.0); };  // no captures
  double const expected = xjob::parallel({.n_jobs = 1}).map_reduce(term, std::views::iota(0, count), 0.25, std::plus<>{});
  xjob::parallel par({.n_jobs = n_jobs, .backend = backend, .batch_size = batch});
  double const got = par.map_reduce(term, std::views::iota(0, count), 0.25, std::plus<>{});
  REQUIRE(std::bit_cast<std::uint64_t>(got) == std::bit_cast<std::uint64_t>(expected));
  double naive = 0.25;
  for (int i = 0; i < count; ++i) naive += term(i);
  REQUIRE(got == Approx(naive).epsilon(1e-12));
}

// A combine that writes down what it combined shows the tree itself: leaves
// of one item below 4097 items, pairs left to right, a last odd node lifted.
TEST_CASE("map_reduce combines in the documented tree, on every backend") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  xjob::parallel par({.n_jobs = 2, .backend = backend, .batch_size = 1});
  auto const name = [](int i) { return std::to_string(i); };
  auto const join = [](std::string const& a, std::string const& b) { return "(" + a + "+" + b + ")"; };
  REQUIRE(par.map_reduce(name, std::views::iota(0, 5), std::string("init"), join) == "(init+(((0+1)+(2+3))+4))");
  REQUIRE(par.map_reduce(name, std::views::iota(0, 1), std::string("init"), join) == "(init+0)");
  REQUIRE(par.map_reduce(name, std::views::iota(0, 0), std::string("init"), join) == "init");
  // More than 4096 items: leaves of several, folded left to right; checked
  // against the tree built level by level.
  for (int const count : {4100, 9000}) {
    CAPTURE(count);
    std::size_t const per_leaf = (static_cast<std::size_t>(count) + 4095) / 4096;
    std::vector<std::string> level;
    for (int i = 0; i < count; ++i) {
      if (static_cast<std::size_t>(i) % per_leaf == 0)
        level.push_back(name(i));
      else
        level.back() = join(level.back(), name(i));
    }
    while (level.size() > 1) {
      std::vector<std::string> up;
      for (std::size_t j = 0; j < level.size(); j += 2) up.push_back(j + 1 < level.size() ? join(level[j], level[j + 1]) : level[j]);
      level = std::move(up);
    }
    REQUIRE(par.map_reduce(name, std::views::iota(0, count), std::string("i"), join) == join("i", level[0]));
  }
}

struct histogram {
  std::vector<long> bins = std::vector<long>(8, 0);
  double total = 0.0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(bins, total);
  }
  friend bool operator==(histogram const&, histogram const&) = default;
};

TEST_CASE("map_reduce carries any transferable result: a histogram") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const n_jobs = GENERATE(2, 3);
  CAPTURE(backend, n_jobs);
  auto const one = [](int i) {
    histogram h;
    h.bins[static_cast<std::size_t>(i * 7 % 8)] = 1;
    h.total = 0.1 * i;
    return h;
  };
  auto const add = [](histogram a, histogram const& b) {
    for (std::size_t k = 0; k < a.bins.size(); ++k) a.bins[k] += b.bins[k];
    a.total += b.total;
    return a;
  };
  histogram const expected = xjob::parallel({.n_jobs = 1}).map_reduce(one, std::views::iota(0, 9001), histogram{}, add);
  histogram const got = xjob::parallel({.n_jobs = n_jobs, .backend = backend}).map_reduce(one, std::views::iota(0, 9001),
                                                                                        histogram{}, add);
  REQUIRE(got == expected);
  REQUIRE(got.bins[0] + got.bins[7] == 2251);  // i % 8 == 0 or 1
}

TEST_CASE("reduce_chunks gives the sequential bits on every axis, chunk size and input kind") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const n_jobs = GENERATE(1, 2, 3);
  auto const chunk = GENERATE(as<std::optional<std::size_t>>{}, std::nullopt, 1, 7);
  CAPTURE(backend, n_jobs, chunk.value_or(0));
  xt::xtensor<double, 2> x = xt::zeros<double>({301, 37});
  fill_pattern(x);
  xjob::shared_array<double> shared({301, 37});
  std::copy(x.begin(), x.end(), shared.begin());
  auto const sum = [](auto const& c) { return double(xt::sum(c)()); };
  xjob::parallel const sequential({.n_jobs = 1});
  xjob::parallel par({.n_jobs = n_jobs, .backend = backend});
  for (std::size_t axis = 0; axis < 2; ++axis) {
    CAPTURE(axis);
    xjob::chunking const how{.axis = axis, .size = chunk};
    double const expected = sequential.reduce_chunks(x, sum, 0.0, std::plus<>{}, how);
    REQUIRE(expected == Approx(xt::sum(x)()).epsilon(1e-12));
    // A private input (workers forked for the call), and one in shared
    // memory (warm workers map it).
    REQUIRE(std::bit_cast<std::uint64_t>(par.reduce_chunks(x, sum, 0.0, std::plus<>{}, how)) ==
            std::bit_cast<std::uint64_t>(expected));
    REQUIRE(std::bit_cast<std::uint64_t>(par.reduce_chunks(shared, sum, 0.0, std::plus<>{}, how)) ==
            std::bit_cast<std::uint64_t>(expected));
  }
}

TEST_CASE("reduce_chunks tells an f that asks where its chunk lies") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  xjob::shared_array<int> x({50, 3});
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  // Each chunk gives its rows' indices, summed: the sum of 0..49, once each.
  auto const rows = [](auto const& c, xjob::chunk_info const& info) {
    long total = 0;
    for (std::size_t r = 0; r < c.shape()[0]; ++r) total += static_cast<long>(info.offset + r);
    return info.extent == c.shape()[0] ? total : -1000000L;
  };
  REQUIRE(par.reduce_chunks(x, rows, 0L, std::plus<>{}, xjob::chunking{.size = 7}) == 1225);
}

TEST_CASE("a throwing f or combine of a reduction is reported as a task_error") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  auto const bad_term = [](int i) { return i == 777 ? throw std::domain_error("term 777") : double(i); };
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)par.map_reduce(bad_term, std::views::iota(0, 1000), 0.0, std::plus<>{}),
                                xjob::task_error, "threw std::domain_error: term 777");
  auto const bad_combine = [](double a, double b) { return a + b > 400000.0 ? throw std::overflow_error("too big") : a + b; };
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      (void)par.map_reduce([](int i) { return double(i); }, std::views::iota(0, 1000), 0.0, bad_combine),
      xjob::task_error, "threw std::overflow_error: too big");
  xt::xtensor<double, 1> const x = xt::ones<double>({100});
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)par.reduce_chunks(x, [](auto const&) -> double { throw std::runtime_error("no"); },
                                                        0.0, std::plus<>{}),
                                xjob::task_error, "threw std::runtime_error: no");
  // The next call runs normally.
  REQUIRE(par.map_reduce([](int i) { return i; }, std::views::iota(0, 10), 0, std::plus<>{}) == 45);
}

TEST_CASE("reduce_chunks refuses a bad axis or chunk size, naming it") {
  xt::xtensor<double, 2> const x = xt::ones<double>({4, 5});
  xjob::parallel par(2);
  auto const sum = [](auto const& c) { return double(xt::sum(c)()); };
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)par.reduce_chunks(x, sum, 0.0, std::plus<>{}, xjob::chunking{.axis = 2}),
                                xjob::invalid_argument, "reduce_chunks: axis 2 is out of range for an input of shape (4, 5)");
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)par.reduce_chunks(x, sum, 0.0, std::plus<>{}, xjob::chunking{.size = 0}),
                                xjob::invalid_argument, "chunk size must be at least 1, got 0");
}

// Cancellation: within 100 ms of the request (a bound the sanitizers, which
// slow everything tenfold, get ten times of).
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr auto cancel_bound = std::chrono::milliseconds(1000);
#else
constexpr auto cancel_bound = std::chrono::milliseconds(100);
#endif

// Requests `source`'s stop after `delay`, on a thread of its own; when()
// is the moment of the request.
class stopper {
 public:
  stopper(std::stop_source source, std::chrono::milliseconds delay)
      : thread_([this, source, delay]() mutable {
          std::this_thread::sleep_for(delay);
          requested_at_ = std::chrono::steady_clock::now();
          source.request_stop();
        }) {}
  ~stopper() {
    if (thread_.joinable()) thread_.join();
  }
  std::chrono::steady_clock::time_point when() {
    thread_.join();
    return requested_at_;
  }

 private:
  std::chrono::steady_clock::time_point requested_at_;
  std::thread thread_;
};

TEST_CASE("a requested stop ends the call with xjob::cancelled within 100 ms, whatever the batch size") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  auto const batch = GENERATE(as<std::optional<std::size_t>>{}, std::nullopt, 1000);
  CAPTURE(backend, batch.value_or(0));
  std::stop_source source;
  xjob::parallel par({.n_jobs = 2, .backend = backend, .batch_size = batch, .stop = source.get_token()});
  auto const nap = [](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return i;
  };
  stopper stop(source, std::chrono::milliseconds(150));
  std::size_t done = 0;
  try {
    (void)par.map(nap, std::views::iota(0, 20'000));
    FAIL("the call was not cancelled");
  } catch (xjob::cancelled const& e) {
    done = e.done();
    REQUIRE(e.total() == 20'000);
  }
  auto const thrown_at = std::chrono::steady_clock::now();
  CHECK(thrown_at - stop.when() < cancel_bound);
  REQUIRE(done < 20'000);
  // The object's token stays stopped: its next call is cancelled before any
  // task; a new object with the same backend runs normally.
  REQUIRE_THROWS_AS(par.map(nap, std::views::iota(0, 5)), xjob::cancelled);
  REQUIRE(xjob::parallel({.n_jobs = 2, .backend = backend}).map(nap, std::views::iota(0, 5)).size() == 5);
}

TEST_CASE("no task starts after the stop was requested") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  if (!runs_closures(backend)) return;
  CAPTURE(backend);
  // 0: tasks run; 1: tasks that began after request_stop() returned;
  // 2: set once it has.
  xjob::testing::shared_counters const counts(3);
  std::stop_source source;
  xjob::parallel par({.n_jobs = 2, .backend = backend, .batch_size = 50, .stop = source.get_token()});
  std::thread stop([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    source.request_stop();
    counts.add(2);
  });
  REQUIRE_THROWS_AS(par.map(
                        [&counts](int) {
                          if (counts[2] != 0) counts.add(1);
                          counts.add(0);
                          std::this_thread::sleep_for(std::chrono::milliseconds(1));
                        },
                        std::views::iota(0, 100'000)),
                    xjob::cancelled);
  stop.join();
  REQUIRE(counts[0] > 0);
  // A worker may have passed its check just before the request and been
  // descheduled before its task began: at most one task per worker.
  REQUIRE(counts[1] <= 2);
}

TEST_CASE("a long task gives up early when it sees stop_requested()") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  REQUIRE_FALSE(xjob::stop_requested());  // outside any task
  std::stop_source source;
  xjob::parallel par({.n_jobs = 2, .backend = backend, .stop = source.get_token()});
  auto const patient = [](int i) {  // would run 20 s
    for (int step = 0; step < 20'000; ++step) {
      if (xjob::stop_requested()) return -1;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return i;
  };
  stopper stop(source, std::chrono::milliseconds(100));
  REQUIRE_THROWS_AS(par.map(patient, std::views::iota(0, 4)), xjob::cancelled);
  CHECK(std::chrono::steady_clock::now() - stop.when() < cancel_bound);
}

TEST_CASE("a stop requested before the call runs no task, also through parallel_config and in a reduction") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  std::stop_source source;
  source.request_stop();
  xjob::parallel_config scope({.stop = source.get_token()});
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  XJOB_REQUIRE_THROWS_WITH_TEXT(par.map([](int i) { return i; }, std::views::iota(0, 100)), xjob::cancelled,
                                "the call was cancelled (its stop token was requested) after 0 of 100 tasks");
  REQUIRE_THROWS_AS(par.map_reduce([](int i) { return i; }, std::views::iota(0, 100), 0, std::plus<>{}),
                    xjob::cancelled);
}

// Progress is reported task by task at least every 50 ms when someone
// follows it, so one batch of all the tasks (a fixed batch size larger than
// the call) does not hold it back until the end.
TEST_CASE("on_progress hears of finished tasks within 100 ms, however large the batch") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  std::vector<std::pair<std::chrono::steady_clock::time_point, std::size_t>> seen;
  std::mutex seen_mutex;
  xjob::parallel par({.n_jobs = 2,
                      .backend = backend,
                      .batch_size = 100'000,
                      .on_progress = [&](xjob::progress const& p) {
                        std::lock_guard lock(seen_mutex);
                        seen.emplace_back(std::chrono::steady_clock::now(), p.done);
                      }});
  auto const nap = [](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return i;
  };
  (void)par.map(nap, std::views::iota(0, 150));  // one batch: about 300 ms on one worker
  auto const ended = std::chrono::steady_clock::now();
  {
    std::lock_guard lock(seen_mutex);
    REQUIRE(seen.size() >= 3);
    REQUIRE(seen.back().second == 150);
    for (std::size_t k = 1; k < seen.size(); ++k) {
      CAPTURE(k, seen[k].second);
      REQUIRE(seen[k].second > seen[k - 1].second);
      CHECK(seen[k].first - seen[k - 1].first < cancel_bound);
    }
    CHECK(ended - seen.back().first < cancel_bound);
  }
  // A reduction reported in parts still gives the sequential bits.
  double const expected = xjob::parallel(1).map_reduce([](int i) { return 1.0 / (i + 1.0); },
                                                       std::views::iota(0, 5000), 0.0, std::plus<>{});
  REQUIRE(par.map_reduce([](int i) { return 1.0 / (i + 1.0); }, std::views::iota(0, 5000), 0.0, std::plus<>{}) ==
          expected);
}

TEST_CASE("map_async and async return at once with a future of the call's result") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  auto const slow_square = [](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return i * i;
  };
  auto const started = std::chrono::steady_clock::now();
  auto pending = par.map_async(slow_square, std::views::iota(0, 60));  // about 150 ms of work
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::milliseconds(100));
  REQUIRE(pending.valid());
  REQUIRE_FALSE(pending.done());
  REQUIRE(pending.wait_for(std::chrono::milliseconds(1)) == std::future_status::timeout);
  std::vector<int> const squares = pending.get();
  REQUIRE(squares.size() == 60);
  REQUIRE(squares[59] == 59 * 59);
  REQUIRE_FALSE(pending.valid());

  auto calls = std::views::iota(0, 20) | std::views::transform([](int i) { return xjob::delayed(+[](int v) { return v + 1; })(i); });
  auto delayed_pending = par.async(calls);
  delayed_pending.wait();
  REQUIRE(delayed_pending.done());
  REQUIRE(delayed_pending.get()[19] == 20);

  // What a task throws comes out of get().
  auto failing = par.map_async([](int i) { return i == 7 ? throw std::out_of_range("seven") : i; }, std::views::iota(0, 50));
  try {
    (void)failing.get();
    FAIL("no exception");
  } catch (xjob::task_error const& e) {
    REQUIRE(e.task_index() == 7);
    REQUIRE(e.message() == "seven");
  }
}

TEST_CASE("a future's cancel() stops its call, and destroying a running future cancels it and waits") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  CAPTURE(backend);
  xjob::parallel par({.n_jobs = 2, .backend = backend});
  auto const nap = [](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    return i;
  };
  auto pending = par.map_async(nap, std::views::iota(0, 20'000));  // 20 s if it ran to the end
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  auto const cancelled_at = std::chrono::steady_clock::now();
  pending.cancel();
  REQUIRE_THROWS_AS(pending.get(), xjob::cancelled);
  CHECK(std::chrono::steady_clock::now() - cancelled_at < cancel_bound);
  {
    auto dropped = par.map_async(nap, std::views::iota(0, 20'000));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }  // cancels and waits here, within the bound, not 20 s
  // The parallel object, whose own token was never requested, goes on.
  REQUIRE(par.map_async(nap, std::views::iota(0, 10)).get().size() == 10);
  // Its own token stops its futures' calls too.
  std::stop_source source;
  xjob::parallel stoppable({.n_jobs = 2, .backend = backend, .stop = source.get_token()});
  auto linked = stoppable.map_async(nap, std::views::iota(0, 20'000));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  source.request_stop();
  REQUIRE_THROWS_AS(linked.get(), xjob::cancelled);
}

TEST_CASE("a resumable output killed at any moment resumes to the uninterrupted result, running only what was missing") {
  xjob::testing::temp_dir dir;
  {
    auto expected = xjob::shared_array<double>::create_npy(dir / "expected.npy", {resume_rows, resume_cols});
    auto const x = resume_input();
    std::copy(x.begin(), x.end(), expected.begin());
    for (double& v : expected) v = 2.0 * v + 1.0;
    expected.commit();
  }
  std::mt19937 random(std::random_device{}());
  for (std::string const& backend : backends_under_test()) {
    for (int trial = 0; trial < 2; ++trial) {
      INFO("backend " << backend << ", trial " << trial);
      std::string const name = backend + "-" + std::to_string(trial);
      std::filesystem::path const path = dir / (name + ".npy");
      std::filesystem::path const first_log = dir / (name + ".first");
      std::filesystem::path const second_log = dir / (name + ".second");
      // A writer killed (SIGKILL, workers and all) after a random number of
      // chunks, or at a random moment from its start.
      ::setenv("XJOB_TEST_CHUNK_LOG", first_log.c_str(), 1);
      ::setenv("XJOB_JOURNAL_INTERVAL_MS", "0", 1);  // record at every report
      pid_t const writer = start_writer(path, backend);
      if (trial == 0) {
        std::size_t const after = std::uniform_int_distribution<std::size_t>(1, resume_chunks - 10)(random);
        auto const give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (logged_chunks(first_log).size() < after && std::chrono::steady_clock::now() < give_up)
          std::this_thread::sleep_for(std::chrono::microseconds(200));
      } else {
        std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 40)(random)));
      }
      ::kill(writer, SIGKILL);
      (void)wait_for_writer(writer);
      std::vector<std::size_t> const first = logged_chunks(first_log);
      // The rerun finishes it.
      ::setenv("XJOB_TEST_CHUNK_LOG", second_log.c_str(), 1);
      int const rerun = wait_for_writer(start_writer(path, backend));
      ::unsetenv("XJOB_TEST_CHUNK_LOG");
      ::unsetenv("XJOB_JOURNAL_INTERVAL_MS");
      REQUIRE(WIFEXITED(rerun));
      REQUIRE(WEXITSTATUS(rerun) == 0);
      std::vector<std::size_t> const second = logged_chunks(second_log);
      // Every chunk ran; those the killed writer had finished ran again
      // only if it died before journaling them: a few, the chunks reported
      // while it wrote back the last group. How many depends on how promptly
      // the writer's journaling thread gets a CPU: on this 2-vCPU machine
      // with a build beside it, up to 10 of 60 were seen. So at most 6 or a
      // third of what the killed writer finished, whichever is more; a
      // journal that records nothing (or only at the end) still fails.
      std::set<std::size_t> ran(first.begin(), first.end());
      ran.insert(second.begin(), second.end());
      CHECK(ran.size() == resume_chunks);
      std::set<std::size_t> const first_set(first.begin(), first.end());
      std::size_t const again =
          std::count_if(second.begin(), second.end(), [&](std::size_t c) { return first_set.contains(c); });
      CHECK(again <= std::max<std::size_t>(6, first_set.size() / 3));
      CHECK(second.size() == std::set<std::size_t>(second.begin(), second.end()).size());
      CHECK(!std::filesystem::exists(path.string() + ".partial"));
      CHECK(!std::filesystem::exists(path.string() + ".journal"));
      xjob::testing::python_run const numpy = xjob::testing::run_python(
          "import numpy as np\n"
          "a = np.load('" + path.string() + "')\n"
          "b = np.load('" + (dir / "expected.npy").string() + "')\n"
          "print(a.shape == b.shape and a.dtype == b.dtype and np.array_equal(a, b))\n");
      INFO(numpy.output);
      CHECK(numpy.output == "True\n");
    }
  }
}

TEST_CASE("the conformance library (xjob/testing/conformance.hpp) passes on every backend") {
  auto const backend = GENERATE(from_range(backends_under_test()));
  xjob::testing::conformance_report const report =
      xjob::testing::check_conformance({.backend = backend, .runs_closures = runs_closures(backend)});
  INFO(backend << ": " << report.summary());
  CHECK(report.checks >= 30);
  CHECK(report.ok());
}

TEST_CASE("its no-shared-memory mode passes on processes, and a broken backend fails it") {
  xjob::testing::conformance_report const report = xjob::testing::check_conformance(
      {.backend = "processes", .memory = xjob::testing::worker_memory::none});
  INFO(report.summary());
  CHECK(report.ok());
  // A backend that skips every other batch is caught, naming what it broke.
  xjob::register_backend("conformance_skips_batches", [](xjob::backend_settings const&) {
    struct skipping final : xjob::backend {
      void run(xjob::batch_call& call) override {
        xjob::batch_cursor cursor{0, 1, {}};
        bool skip = false;
        for (xjob::batch_range batch = call.next_batch(cursor); !batch.empty(); batch = call.next_batch(cursor)) {
          if (!(skip = !skip)) call.finish_batch(cursor, batch, call.run_batch(batch));
        }
      }
    };
    return std::make_unique<skipping>();
  });
  xjob::testing::conformance_report const broken =
      xjob::testing::check_conformance({.backend = "conformance_skips_batches"});
  CHECK_FALSE(broken.ok());
  CHECK(broken.summary().find("map of 7 tasks") != std::string::npos);
}

int main(int argc, char** argv) {
  xjob::init(argc, argv);  // for the forkserver and spawn start methods
  if (argc == 4 && std::string_view(argv[1]) == "--resumable-writer") {
    write_resumable(argv[2], argv[3]);
    return 0;
  }
  return Catch::Session().run(argc, argv);
}
