// The processes backend beyond the conformance suite: what only worker
// processes can do (closures without pickling, isolation), and every way a
// worker can fail, each caused for real: a throw, SIGSEGV, SIGKILL, abort,
// _exit, the kernel's OOM killer, a stuck task, a slow call. After each:
// no zombie, no leaked descriptor, no stray shared memory.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_reduce.h>
#include <xtensor/xmath.hpp>
#include <xtensor/xtensor.hpp>

#include "process_support.hpp"
#include "test_support.hpp"
#include <xjob/cpu_count.hpp>
#include <xjob/errors.hpp>
#include <xjob/map_chunks.hpp>
#include <xjob/parallel.hpp>

namespace {

using namespace std::chrono_literals;
using xjob::testing::child_processes;
using xjob::testing::crash;
using xjob::testing::process_ended;
using xjob::testing::process_resources;
using xjob::testing::require_nothing_left;
using xjob::testing::shared_counters;

xjob::parallel processes(int n_jobs, xjob::parallel_options options = {}) {
  options.n_jobs = n_jobs;
  options.backend = "processes";
  return xjob::parallel(options);
}

// A user type that travels through its cereal serialize().
struct stats {
  double mean = 0;
  std::vector<int> histogram;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(mean, histogram);
  }
};

}  // namespace

TEST_CASE("closures with captured local state run in worker processes") {
  std::vector<long> const weights = {3, 5, 7};
  long const offset = 100;
  pid_t const caller = getpid();
  auto par = processes(2);
  REQUIRE(par.runs_out_of_process());
  auto const results = par.map(
      [&weights, offset](long i) { return weights[static_cast<std::size_t>(i) % 3] * i + offset; },
      std::views::iota(0L, 1000L));
  for (long i = 0; i < 1000; ++i) REQUIRE(results[static_cast<std::size_t>(i)] == weights[i % 3] * i + offset);

  auto const pids = par.map([](int) { return getpid(); }, std::views::iota(0, 200));
  std::set<pid_t> const distinct(pids.begin(), pids.end());
  REQUIRE(distinct.count(caller) == 0);
  REQUIRE(distinct.size() <= 2);
}

TEST_CASE("one job still runs in a worker process: isolation is why the backend was chosen") {
  auto par = processes(1);
  REQUIRE(par.backend_name() == "processes");
  auto const pids = par.map([](int) { return getpid(); }, std::views::iota(0, 5));
  REQUIRE(pids[0] != getpid());
}

TEST_CASE("results of every transferable kind come back, larger than the result ring too") {
  auto par = processes(2, {.batch_size = 3});
  auto const words = par.map([](int i) { return std::string(static_cast<std::size_t>(i), 'a' + static_cast<char>(i % 26)); },
                             std::views::iota(0, 300));
  for (int i = 0; i < 300; ++i) REQUIRE(words[static_cast<std::size_t>(i)] == std::string(static_cast<std::size_t>(i), 'a' + static_cast<char>(i % 26)));

  auto const maps = par.map([](int i) { return std::map<std::string, int>{{"i", i}, {"twice", 2 * i}}; },
                            std::views::iota(0, 20));
  REQUIRE(maps[7].at("twice") == 14);

  auto const arrays = par.map([](int i) {
    xt::xtensor<double, 2> a = xt::ones<double>({2, 3});
    return xt::xtensor<double, 2>(a * i);
  }, std::views::iota(0, 20));
  REQUIRE(arrays[5].shape()[1] == 3);
  REQUIRE(arrays[5](1, 2) == 5.0);

  auto const user = par.map([](int i) { return stats{i * 0.5, std::vector<int>(static_cast<std::size_t>(i), i)}; },
                            std::views::iota(0, 20));
  REQUIRE(user[9].mean == 4.5);
  REQUIRE(user[9].histogram == std::vector<int>(9, 9));

  auto const wide = par.map([](int i) { return static_cast<unsigned __int128>(i) << 100; }, std::views::iota(0, 10));
  REQUIRE(wide[3] == static_cast<unsigned __int128>(3) << 100);

  // 3 MiB per task: each record is sent through the 512 KiB ring in pieces.
  auto const big = par.map([](int i) { return std::vector<double>(3 << 17, i); }, std::views::iota(0, 6));
  for (int i = 0; i < 6; ++i) REQUIRE(big[static_cast<std::size_t>(i)] == std::vector<double>(3 << 17, i));
}

TEST_CASE("results come back as streams, in order and as they complete") {
  auto par = processes(2, {.batch_size = 1});
  std::vector<int> in_order;
  for (int v : par.map([](int i) { return i * i; }, std::views::iota(0, 50), xjob::return_as_generator))
    in_order.push_back(v);
  REQUIRE(in_order.size() == 50);
  REQUIRE(in_order[7] == 49);
  std::set<std::size_t> seen;
  for (auto [index, value] : par.map([](int i) { return i + 1; }, std::views::iota(0, 50), xjob::return_as_generator_unordered)) {
    REQUIRE(value == static_cast<int>(index) + 1);
    seen.insert(index);
  }
  REQUIRE(seen.size() == 50);
}

TEST_CASE("map_chunks writes from worker processes into shared and private outputs") {
  auto par = processes(2);
  xt::xtensor<double, 2> x = xt::zeros<double>({300, 7});
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = static_cast<double>(i);
  auto f = [](auto const& in, auto&& out) { out = xt::sqrt(in) + 1.0; };
  auto y = par.map_chunks(x, f);
  REQUIRE(xt::allclose(y.view(), xt::sqrt(x) + 1.0));
  // A plain xtensor output goes through shared memory and back, contents
  // included (f may read what is there).
  xt::xtensor<double, 2> counts = xt::ones<double>({300, 7});
  par.map_chunks(x, [](auto const&, auto&& out) { out += 1.0; }, counts, xjob::chunking{.axis = 1, .size = 2});
  REQUIRE(xt::all(xt::equal(counts, 2.0)));
}

TEST_CASE("a throwing task is reported with index, type and message from the worker") {
  process_resources const before;
  auto par = processes(2);
  XJOB_REQUIRE_THROWS_WITH_TEXT(
      (void)par.map([](int i) { return i == 33 ? throw std::domain_error("bad domain") : i; }, std::views::iota(0, 100)),
      xjob::task_error, "task 33 threw std::domain_error: bad domain");
  require_nothing_left(before);
}

TEST_CASE("a worker that dies is reported with its task, signal or status and pid; the backend goes on") {
  auto const how = GENERATE(as<std::string>{}, "SIGSEGV", "SIGKILL", "abort", "_exit(3)", "exit(0) in a task");
  CAPTURE(how);
  shared_counters const ran(100);  // its memfd stays open with it
  process_resources const before;
  auto par = processes(2, {.batch_size = 1});
  try {
    par.map([&](int i) {
      if (i == 37) crash(how);
      ran.add(static_cast<std::size_t>(i));
      return i;
    }, std::views::iota(0, 100));
    FAIL("no exception");
  } catch (xjob::worker_crashed const& e) {
    REQUIRE(e.task_index() == std::optional<std::size_t>(37));
    REQUIRE(e.pid() > 0);
    REQUIRE(e.pid() != getpid());
    REQUIRE(e.attempts() == 1);
    std::string const what = e.what();
    REQUIRE_THAT(what, Catch::Contains("running task 37"));
    REQUIRE_THAT(what, Catch::Contains(std::to_string(e.pid())));
    if (how == "SIGKILL") REQUIRE(e.signal() == SIGKILL);
    if (how == "abort") REQUIRE(e.signal() == SIGABRT);
    if (how == "_exit(3)") REQUIRE(e.exit_status() == 3);
    if (how == "exit(0) in a task") REQUIRE(e.exit_status() == 0);
    if (how == "SIGSEGV") {
      // Even under a sanitizer or Catch, whose handlers the worker drops.
      REQUIRE(e.signal() == SIGSEGV);
      REQUIRE_THAT(what, Catch::Contains("killed by signal 11 (SIGSEGV"));
    }
  }
  // Tasks done before the crash stay done; the call stopped soon after.
  REQUIRE(ran[0] == 1);
  REQUIRE(ran[37] == 0);
  require_nothing_left(before);
  // The same parallel object works at once.
  auto const again = par.map([](int i) { return i * 2; }, std::views::iota(0, 10));
  REQUIRE(again[9] == 18);
}

TEST_CASE("results written to shared memory before a crash stay") {
  auto par = processes(1, {.chunk_size = 10});
  xjob::shared_array<int> out({100});
  xt::xtensor<int, 1> const x = xt::arange<int>(100);
  REQUIRE_THROWS_AS(par.map_chunks(x, [&x](auto const& in, auto&& o) {
    if (&in(0) == &x(50)) raise(SIGKILL);
    o = in + 1;
  }, out), xjob::worker_crashed);
  for (int i = 0; i < 50; ++i) REQUIRE(out.data()[i] == i + 1);
  for (int i = 50; i < 100; ++i) REQUIRE(out.data()[i] == 0);
}

TEST_CASE("retries re-run a crashed task on a fresh worker") {
  shared_counters const attempts(40);  // its memfd stays open with it
  process_resources const before;
  SECTION("a task that crashes once succeeds on its retry") {
    auto par = processes(2, {.batch_size = 2, .retries = 1});
    auto const pids = par.map([&](int i) {
      if (i == 13 && attempts[13] == 0) {
        attempts.add(13);
        raise(SIGKILL);
      }
      attempts.add(static_cast<std::size_t>(i));
      return getpid();
    }, std::views::iota(0, 40));
    REQUIRE(pids.size() == 40);
    REQUIRE(attempts[13] == 2);
    // Only the crashed task ran again, not its batch mate (12): with
    // retries, results go back per task, so a dead worker loses only the
    // task it was running.
    for (std::size_t i = 0; i < 40; ++i)
      if (i != 13) REQUIRE(attempts[i] == 1);
    std::set<pid_t> const distinct(pids.begin(), pids.end());
    REQUIRE(distinct.size() <= 3);
  }
  SECTION("a task that always crashes fails after its retries") {
    auto par = processes(2, {.retries = 2});
    try {
      (void)par.map([](int i) {
        if (i == 5) std::abort();
        return i;
      }, std::views::iota(0, 40));
      FAIL("no exception");
    } catch (xjob::worker_crashed const& e) {
      REQUIRE(e.task_index() == std::optional<std::size_t>(5));
      REQUIRE(e.attempts() == 3);
      REQUIRE_THAT(e.what(), Catch::Contains("ran 3 times"));
    }
  }
  require_nothing_left(before);
}

TEST_CASE("a worker killed by the kernel for memory is a crash with SIGKILL") {
  // A memory cgroup (v1) of 64 MiB that the task moves itself into, then
  // allocates past: the kernel's OOM killer ends it.
  std::ifstream self_groups("/proc/self/cgroup");
  std::string line, group;
  while (std::getline(self_groups, line))
    if (auto at = line.find(":memory:"); at != std::string::npos) group = line.substr(at + 8);
  std::filesystem::path const cgroup =
      std::filesystem::path("/sys/fs/cgroup/memory") / group.substr(group.empty() ? 0 : 1) /
      ("xjob-oom-" + std::to_string(getpid()));
  std::error_code error;
  if (group.empty() || !std::filesystem::create_directory(cgroup, error)) {
    WARN("no writable memory cgroup here; the OOM killer cannot be provoked safely: " << cgroup.string());
    return;
  }
  std::ofstream(cgroup / "memory.limit_in_bytes") << (64 << 20);
  std::ofstream(cgroup / "memory.memsw.limit_in_bytes") << (64 << 20);  // no swapping out of it (if swap accounting)
  std::ofstream(cgroup / "memory.swappiness") << 0;
  auto par = processes(2, {.batch_size = 1});
  try {
    (void)par.map([&cgroup](int i) {
      if (i == 3) {
        std::ofstream(cgroup / "cgroup.procs") << getpid();
        std::vector<char*> blocks;
        for (int mib = 0; mib < 1024; ++mib) {
          auto* block = static_cast<char*>(std::malloc(1 << 20));
          if (block == nullptr) break;
          for (std::size_t b = 0; b < (1u << 20); b += 4096) block[b] = 1;
          blocks.push_back(block);
        }
        return -1;  // not reached: the kernel kills it first
      }
      return i;
    }, std::views::iota(0, 8));
    FAIL("no exception");
  } catch (xjob::worker_crashed const& e) {
    REQUIRE(e.task_index() == std::optional<std::size_t>(3));
    REQUIRE(e.signal() == SIGKILL);
  }
  std::filesystem::remove(cgroup, error);
}

TEST_CASE("a task past task_timeout has only its worker killed and replaced") {
  process_resources const before;
  SECTION("without retries the call fails naming the task") {
    auto par = processes(2, {.batch_size = 1, .task_timeout = 300ms});
    auto const start = std::chrono::steady_clock::now();
    try {
      (void)par.map([](int i) {
        if (i == 4) std::this_thread::sleep_for(20s);
        return i;
      }, std::views::iota(0, 10));
      FAIL("no exception");
    } catch (xjob::timeout_error const& e) {
      REQUIRE(e.task_index() == std::optional<std::size_t>(4));
      REQUIRE(e.limit() == 300ms);
      REQUIRE_THAT(e.what(), Catch::Contains("task 4 ran longer than its timeout of 0.3 s"));
    }
    REQUIRE(std::chrono::steady_clock::now() - start < 5s);
  }
  SECTION("with a retry the other worker keeps running and the call succeeds") {
    shared_counters const hung(1);
    auto par = processes(2, {.batch_size = 1, .retries = 1, .task_timeout = 300ms});
    auto const pids = par.map([&](int i) {
      if (i == 4 && hung[0] == 0) {
        hung.add(0);
        std::this_thread::sleep_for(20s);
      }
      std::this_thread::sleep_for(20ms);
      return getpid();
    }, std::views::iota(0, 40));
    std::set<pid_t> const distinct(pids.begin(), pids.end());
    // Two workers from the start, one replacement: the healthy one was not
    // restarted.
    REQUIRE(distinct.size() == 3);
    REQUIRE(std::count(pids.begin(), pids.end(), pids[4]) >= 1);
  }
  require_nothing_left(before);
}

TEST_CASE("a call past call_timeout has all its workers killed") {
  process_resources const before;
  auto par = processes(2, {.call_timeout = 300ms});
  auto const start = std::chrono::steady_clock::now();
  try {
    par.map([](int) { std::this_thread::sleep_for(20s); }, std::views::iota(0, 4));
    FAIL("no exception");
  } catch (xjob::timeout_error const& e) {
    REQUIRE_FALSE(e.task_index().has_value());
    REQUIRE_THAT(e.what(), Catch::Contains("the call ran longer than its timeout of 0.3 s"));
  }
  REQUIRE(std::chrono::steady_clock::now() - start < 5s);
  require_nothing_left(before);
}

TEST_CASE("the options of worker processes are refused by in-process backends") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::parallel({.n_jobs = 2, .backend = "threads", .retries = 1}),
                                xjob::invalid_argument, "retries needs a backend that runs tasks in worker processes");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::parallel({.n_jobs = 2, .backend = "threads", .task_timeout = 1s}),
                                xjob::invalid_argument, "task_timeout needs");
  XJOB_REQUIRE_THROWS_WITH_TEXT(processes(2, {.retries = -1}), xjob::invalid_argument, "retries must be 0 or more, got -1");
  XJOB_REQUIRE_THROWS_WITH_TEXT(processes(2, {.call_timeout = 0s}), xjob::invalid_argument,
                                "call_timeout must be positive");
}

TEST_CASE("workers die with their caller: no orphans") {
  xjob::shared_array<int> worker_pids({2});
  pid_t const caller = fork();
  REQUIRE(caller >= 0);
  if (caller == 0) {
    try {
      auto par = processes(2, {.batch_size = 1});
      par.map([&worker_pids](int i) {
        worker_pids.data()[i] = getpid();
        std::this_thread::sleep_for(60s);
      }, std::views::iota(0, 2));
    } catch (...) {
    }
    _exit(0);
  }
  auto const deadline = std::chrono::steady_clock::now() + 20s;
  while ((worker_pids.data()[0] == 0 || worker_pids.data()[1] == 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  REQUIRE(worker_pids.data()[0] != 0);
  REQUIRE(worker_pids.data()[1] != 0);
  kill(caller, SIGKILL);
  waitpid(caller, nullptr, 0);
  auto const gone_by = std::chrono::steady_clock::now() + 5s;
  while (!(process_ended(worker_pids.data()[0]) && process_ended(worker_pids.data()[1])) &&
         std::chrono::steady_clock::now() < gone_by)
    std::this_thread::sleep_for(5ms);
  REQUIRE(process_ended(worker_pids.data()[0]));
  REQUIRE(process_ended(worker_pids.data()[1]));
}

TEST_CASE("threads and processes alternate in one program; workers cap nested oneTBB parallelism") {
#if defined(__SANITIZE_THREAD__)
  // TSan ends a child of a multi-threaded process that starts threads.
  SUCCEED("skipped under ThreadSanitizer");
#else
  auto threads = xjob::parallel({.n_jobs = 2, .backend = "threads"});
  auto par = processes(2, {.task_timeout = 10s});
  int const share = std::max(1, xjob::cpu_count() / 2);
  for (int round = 0; round < 60; ++round) {
    auto const squares = threads.map([](long i) { return i * i; }, std::views::iota(0L, 2000L));
    REQUIRE(squares[1999] == 1999L * 1999L);
    auto const nested = par.map([](int) {
      long const sum = tbb::parallel_reduce(
          tbb::blocked_range<long>(0, 100000), 0L,
          [](tbb::blocked_range<long> const& r, long s) {
            for (long i = r.begin(); i < r.end(); ++i) s += i;
            return s;
          },
          std::plus<>());
      auto const cap = static_cast<int>(tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism));
      return std::array<long, 3>{sum, cap, xjob::cpu_count()};
    }, std::views::iota(0, 4));
    for (auto const& [sum, cap, cpus] : nested) {
      REQUIRE(sum == 4999950000L);
      REQUIRE(cap == share);
      REQUIRE(cpus == share);
    }
  }
#endif
}

TEST_CASE("worker memory is shared only through anonymous memory: nothing another user could open") {
  process_resources const before;
  auto par = processes(2);
  auto const named = par.map([](int) {
    // Shared mappings of this worker that have a name in the file system.
    std::ifstream maps("/proc/self/maps");
    std::string line;
    std::vector<std::string> found;
    while (std::getline(maps, line)) {
      std::istringstream fields(line);
      std::string range, perms, offset, device, inode, path;
      fields >> range >> perms >> offset >> device >> inode;
      std::getline(fields >> std::ws, path);
      if (perms.size() == 4 && perms[3] == 's' && path.rfind("/memfd:", 0) != 0 && path != "/dev/zero (deleted)")
        found.push_back(line);
    }
    return found;
  }, std::views::iota(0, 2));
  for (auto const& lines : named) REQUIRE(lines.empty());
  require_nothing_left(before);
}
