// Warm workers of the processes backend: calls whose callable has no
// captures run on workers kept between calls, with every start method; the
// promises of the backend hold on them too (crashes named, retries of just
// the crashed task, task and call timeouts, no zombies or descriptors left),
// and their mappings of the caller's memory go when the caller's do. Its
// own main() calls xjob::init(), for forkserver and spawn.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <ranges>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include "process_support.hpp"
#include "test_support.hpp"
#include <xjob/xjob.hpp>

namespace {

using namespace std::chrono_literals;
using xjob::testing::process_resources;
using xjob::testing::require_nothing_left;

xjob::parallel processes(int n_jobs, xjob::start_method method, xjob::parallel_options options = {}) {
  options.n_jobs = n_jobs;
  options.backend = "processes";
  options.start_method = method;
  return xjob::parallel(options);
}

std::vector<xjob::start_method> methods() {
  return {xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn};
}

// The pids that wrote `out` (each chunk writes its worker's pid).
std::set<int> writers(xjob::shared_array<double> const& out) {
  std::set<int> pids;
  for (double v : out) pids.insert(static_cast<int>(v));
  return pids;
}

auto const write_pid = [](auto const&, auto&& out) { out.fill(static_cast<double>(getpid())); };

long triple_plus_one(long i) { return i * 3 + 1; }
long minus_one(long i) { return i - 1; }
int forty_two() { return 42; }
std::string label(int i, std::string const& prefix) { return prefix + std::to_string(i); }
int worker_pid(int) { return getpid(); }

// Lines of /proc/<pid>/maps that map xjob's shared arrays.
std::size_t shared_array_mappings(int pid) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::size_t count = 0;
  for (std::string line; std::getline(maps, line);)
    if (line.find("xjob-shared-array") != std::string::npos) ++count;
  return count;
}

}  // namespace

TEST_CASE("captureless calls run on the same warm workers call after call, with every start method") {
  auto const method = GENERATE(from_range(methods()));
  CAPTURE(xjob::to_string(method));
  process_resources const before;
  {
    auto par = processes(2, method);
    xt::xtensor<double, 1> const x = xt::arange<double>(100000);
    auto first = par.map_chunks(x, write_pid, xjob::chunking{.size = 1000});
    std::set<int> const pids = writers(first);
    REQUIRE_FALSE(pids.contains(getpid()));
    std::vector<int> warm = xjob::process_worker_pids();
    for (int pid : pids) REQUIRE(std::find(warm.begin(), warm.end(), pid) != warm.end());
    // Another call, and another parallel object with the same n_jobs and
    // start method: the same workers.
    for (int i = 0; i < 3; ++i) {
      auto again = processes(2, method).map_chunks(x, write_pid, xjob::chunking{.size = 1000});
      for (int pid : writers(again)) REQUIRE(std::find(warm.begin(), warm.end(), pid) != warm.end());
    }
    // The results are right, from an input in private memory (copied into
    // shared memory once for the call) and from a shared_array.
    auto y = par.map_chunks(x, [](auto const& in, auto&& out) { out = xt::sqrt(in) * 2.0 + 1.0; });
    REQUIRE(xt::allclose(y.view(), xt::sqrt(x) * 2.0 + 1.0));
    auto z = par.map_chunks(y, [](auto const& in, auto&& out) { out = in - 1.0; });
    REQUIRE(xt::allclose(z.view(), xt::sqrt(x) * 2.0));
  }
  require_nothing_left(before);
}

TEST_CASE("map and delayed calls of plain functions and captureless lambdas run on warm workers") {
  auto const method = GENERATE(from_range(methods()));
  CAPTURE(xjob::to_string(method));
  process_resources const before;
  {
    auto par = processes(2, method);
    // 200,000 items: their encoding (1.6 MB) reaches the workers through
    // shared memory, not their sockets.
    auto const many = par.map(triple_plus_one, std::views::iota(0L, 200000L));
    REQUIRE(many.size() == 200000);
    for (long i = 0; i < 200000; ++i) REQUIRE(many[static_cast<std::size_t>(i)] == i * 3 + 1);
    auto const words = par(std::views::iota(0, 50) |
                           std::views::transform([](int i) { return xjob::delayed(label)(i, std::string("w")); }));
    REQUIRE(words[42] == "w42");
    // Runs of calls to different functions of one type (each function
    // travels once per run), and calls without arguments.
    std::vector<decltype(xjob::delayed(&minus_one)(0L))> mixed;
    for (long i = 0; i < 1000; ++i) mixed.push_back(xjob::delayed(i % 300 < 150 ? &triple_plus_one : &minus_one)(i));
    auto const both = par(mixed);
    for (long i = 0; i < 1000; ++i)
      REQUIRE(both[static_cast<std::size_t>(i)] == (i % 300 < 150 ? i * 3 + 1 : i - 1));
    std::vector<decltype(xjob::delayed(&forty_two)())> const none(10, xjob::delayed(&forty_two)());
    REQUIRE(par(none) == std::vector<int>(10, 42));
    auto const squares = par.map([](int i) { return i * i; }, std::vector<int>{1, 2, 3, 4});
    REQUIRE(squares == std::vector<int>{1, 4, 9, 16});
    std::vector<int> const warm = xjob::process_worker_pids();
    for (int pid : par.map(worker_pid, std::views::iota(0, 100)))
      REQUIRE(std::find(warm.begin(), warm.end(), pid) != warm.end());
  }
  require_nothing_left(before);
}

TEST_CASE("a closure with captures runs on workers forked for the call; forkserver and spawn refuse it") {
  process_resources const before;
  {
    xt::xtensor<double, 1> const x = xt::arange<double>(10000);
    double const offset = 0.5;
    auto with_capture = [offset](auto const& in, auto&& out) { out = in + offset + 0.0 * getpid(); };
    auto forked = processes(2, xjob::start_method::fork);
    auto y = forked.map_chunks(x, with_capture);
    REQUIRE(xt::allclose(y.view(), x + 0.5));
    REQUIRE(xjob::process_worker_pids().empty());
    for (auto method : {xjob::start_method::forkserver, xjob::start_method::spawn}) {
      XJOB_REQUIRE_THROWS_WITH_TEXT((void)processes(2, method).map_chunks(x, with_capture), xjob::invalid_argument,
                                    "runs only calls whose callable has no captures");
    }
    // Items that are pointers into the caller's memory never go to warm
    // workers (the address would travel, not the value): they run forked.
    std::vector<double> const values = {1.5, 2.5, 3.5};
    std::vector<double const*> const pointers = {&values[0], &values[1], &values[2]};
    REQUIRE(forked.map([](double const* p) { return *p; }, pointers) == values);
    XJOB_REQUIRE_THROWS_WITH_TEXT((void)processes(2, xjob::start_method::spawn).map([](double const* p) { return *p; },
                                                                                     pointers),
                                  xjob::invalid_argument, "runs only calls whose callable has no captures");
    // reuse_workers = false: fresh workers at every call.
    auto fresh = processes(2, xjob::start_method::fork, {.reuse_workers = false});
    std::set<int> const first = writers(fresh.map_chunks(x, write_pid));
    std::set<int> const second = writers(fresh.map_chunks(x, write_pid));
    for (int pid : second) REQUIRE_FALSE(first.contains(pid));
    REQUIRE(xjob::process_worker_pids().empty());
  }
  require_nothing_left(before);
}

TEST_CASE("a warm worker that crashes is named with its task, pid and signal, and replaced") {
  auto const method = GENERATE(from_range(methods()));
  CAPTURE(xjob::to_string(method));
  process_resources const before;
  {
    auto par = processes(2, method);
    xt::xtensor<double, 1> const x = xt::arange<double>(1000);
    auto crash_at_700 = [](auto const& in, auto&& out) {
      if (in(0) == 700.0) xjob::testing::crash("SIGSEGV");
      out = in;
    };
    try {
      (void)par.map_chunks(x, crash_at_700, xjob::chunking{.size = 100});
      FAIL("no exception");
    } catch (xjob::worker_crashed const& e) {
      REQUIRE(e.task_index() == std::optional<std::size_t>(7));
      REQUIRE(e.signal() == SIGSEGV);
      REQUIRE(e.pid() > 0);
    }
    // The next call runs on a replacement.
    auto y = par.map_chunks(x, [](auto const& in, auto&& out) { out = in * 2.0; });
    REQUIRE(xt::allclose(y.view(), x * 2.0));
  }
  require_nothing_left(before);
}

TEST_CASE("retries re-run only the task whose warm worker died, not its batch mates") {
  process_resources const before;
  {
    auto par = processes(2, xjob::start_method::fork, {.batch_size = 4, .retries = 1});
    xt::xtensor<double, 1> const x = xt::arange<double>(64);
    xjob::shared_array<double> runs({64});
    // Each task counts its runs; task 13 crashes on its first.
    par.map_chunks(
        x,
        [](auto const& in, auto&& out) {
          out += 1.0;
          if (in(0) == 13.0 && out(0) == 1.0) xjob::testing::crash("SIGKILL");
        },
        runs, xjob::chunking{.size = 1});
    for (std::size_t i = 0; i < 64; ++i) {
      CAPTURE(i);
      REQUIRE(runs.data()[i] == (i == 13 ? 2.0 : 1.0));
    }
  }
  require_nothing_left(before);
}

TEST_CASE("task_timeout kills only the stuck warm worker; call_timeout fails the call; the set goes on") {
  process_resources const before;
  {
    xt::xtensor<double, 1> const x = xt::arange<double>(40);
    auto sleepy = [](auto const& in, auto&& out) {
      if (in(0) == 5.0) std::this_thread::sleep_for(30s);
      out.fill(static_cast<double>(getpid()));
    };
    auto par = processes(2, xjob::start_method::fork, {.task_timeout = 0.3s});
    try {
      (void)par.map_chunks(x, sleepy, xjob::chunking{.size = 1});
      FAIL("no exception");
    } catch (xjob::timeout_error const& e) {
      REQUIRE(e.task_index() == std::optional<std::size_t>(5));
    }
    REQUIRE(xjob::process_worker_pids().size() == 1);  // the other one is still warm
    auto slow = processes(2, xjob::start_method::fork, {.call_timeout = 0.3s});
    REQUIRE_THROWS_AS(slow.map_chunks(x, sleepy, xjob::chunking{.size = 1}), xjob::timeout_error);
    auto y = par.map_chunks(x, [](auto const& in, auto&& out) { out = in + 1.0; });
    REQUIRE(xt::allclose(y.view(), x + 1.0));
  }
  require_nothing_left(before);
}

TEST_CASE("warm workers exit after the idle timeout, leaving no zombie") {
  process_resources const before;
  {
    auto par = processes(2, xjob::start_method::fork, {.idle_timeout = 0.2s});
    xt::xtensor<double, 1> const x = xt::arange<double>(10000);
    std::set<int> const pids = writers(par.map_chunks(x, write_pid));
    REQUIRE_FALSE(xjob::process_worker_pids().empty());
    auto const deadline = std::chrono::steady_clock::now() + 5s;
    while (!xjob::process_worker_pids().empty() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    REQUIRE(xjob::process_worker_pids().empty());
    for (int pid : pids) REQUIRE(xjob::testing::process_ended(pid));
    // They come back on demand.
    REQUIRE(writers(par.map_chunks(x, write_pid)).size() >= 1);
  }
  require_nothing_left(before);
}

TEST_CASE("warm workers unmap a shared array once the caller has let it go") {
  process_resources const before;
  {
    auto par = processes(2, xjob::start_method::fork);
    xt::xtensor<double, 1> const x = xt::arange<double>(20000);  // 160 KB: not cached
    std::set<int> pids;
    for (int i = 0; i < 30; ++i) {
      auto out = par.map_chunks(x, write_pid);
      for (int pid : writers(out)) pids.insert(pid);
    }
    // The last call's arrays are gone too; the notes reach idle workers at once.
    std::this_thread::sleep_for(100ms);
    for (int pid : pids) {
      CAPTURE(pid);
      // The call's block (kept in the cache for the next call) only.
      REQUIRE(shared_array_mappings(pid) <= 1);
    }
  }
  require_nothing_left(before);
}

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  return Catch::Session().run(argc, argv);
}
