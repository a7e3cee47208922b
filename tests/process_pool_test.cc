// process_pool: Pool and ProcessPoolExecutor's API on long-lived workers,
// with every start method; initializers run once, workers are reused and
// recycled; throws, crashes, cancellation, shutdown and idle timeouts, each
// caused for real; nothing left behind.
#include <xjob/process_pool.hpp>

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <chrono>
#include <cstdio>
#include <map>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "process_support.hpp"
#include "test_support.hpp"
#include <xjob/init.hpp>
#include <xjob/ipc/queue.hpp>
#include <xjob/shared_array.hpp>
#include <xjob/transfer_xtensor.hpp>
#include <xtensor/xbuilder.hpp>
#include <xtensor/xmath.hpp>
#include <xjob/worker.hpp>

namespace {

using namespace std::chrono_literals;

// Set by the initializer, in each worker's own memory.
int initializer_runs = 0;
int initializer_value = 0;

void initialize(int value) {
  ++initializer_runs;
  initializer_value = value;
}

void failing_initializer() { throw std::runtime_error("cannot load the model"); }

int square(int x) { return x * x; }

std::string repeat(std::string const& text, int times) {
  std::string out;
  for (int i = 0; i < times; ++i) out += text;
  return out;
}

// What a task sees of the worker it runs in.
struct worker_view {
  int pid = 0;
  int index = -1;
  int initializer_runs = 0;
  int initializer_value = 0;
};

worker_view look_around(int) {
  return {getpid(), xjob::worker_index().value_or(-1), initializer_runs, initializer_value};
}

int slow_identity(int x) {
  std::this_thread::sleep_for(std::chrono::milliseconds(x));
  return x;
}

int throw_on_seven(int x) {
  if (x == 7) throw std::out_of_range("seven is out of range");
  return x;
}

int crash_on(int x) {
  if (x < 0) xjob::testing::crash("SIGSEGV");
  return x;
}

void touch(int) {}

// Closes every descriptor above stderr (the worker's socket to the pool
// among them), then keeps running as a stuck task would.
int close_everything_and_wait(int) {
  close_range(3, ~0U, 0);
  std::this_thread::sleep_for(std::chrono::seconds(30));
  return 0;
}

// Writes 64 KiB to stdout, as a task that logs with printf does.
int chatty_double(int x) {
  for (int line = 0; line < 1024; ++line)
    std::printf("task %d, line %4d: a worker's log line, 64 bytes long...........\n", x, line);
  std::fflush(stdout);
  return 2 * x;
}

std::size_t length_of(std::string text) { return text.size(); }
double scaled(double value, long factor) { return value * static_cast<double>(factor); }

double sum_of(std::vector<double> const& values) {
  double total = 0;
  for (double v : values) total += v;
  return total;
}

}  // namespace

TEST_CASE("map, starmap, imap, imap_unordered, submit and apply give the right results with every start method") {
  xjob::start_method const method = GENERATE(xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn);
  CAPTURE(xjob::to_string(method));
  xjob::process_pool pool({.processes = 2, .start_method = method});
  REQUIRE(pool.size() == 2);
  REQUIRE(pool.start_method() == method);

  std::vector<int> const squares = pool.map(square, std::views::iota(0, 20));
  REQUIRE(squares.size() == 20);
  for (int i = 0; i < 20; ++i) REQUIRE(squares[static_cast<std::size_t>(i)] == i * i);

  std::vector<std::pair<std::string, int>> const pairs = {{"ab", 2}, {"c", 3}, {"", 5}};
  REQUIRE(pool.starmap(repeat, pairs) == std::vector<std::string>{"abab", "ccc", ""});

  std::vector<int> in_order;
  for (int v : pool.imap(square, std::views::iota(0, 10))) in_order.push_back(v);
  REQUIRE(in_order == std::vector<int>{0, 1, 4, 9, 16, 25, 36, 49, 64, 81});

  std::multiset<int> unordered;
  for (int v : pool.imap_unordered(square, std::vector<int>{3, 1, 2}, 1)) unordered.insert(v);
  REQUIRE(unordered == std::multiset<int>{1, 4, 9});

  pool.map(touch, std::views::iota(0, 5));  // void: nothing to return, failures still thrown

  auto future = pool.submit(sum_of, std::vector<double>{1.5, 2.5, 3.0});
  REQUIRE(future.get() == 7.0);
  REQUIRE(pool.apply(square, 12) == 144);
  auto lambda = pool.apply_async([](int a, int b) { return a - b; }, 10, 4);
  REQUIRE(lambda.get() == 6);

  // Arguments are converted to the function's parameter types before they
  // travel: a C string becomes the std::string the function takes (a
  // pointer would reach the worker without its characters), an int a long.
  REQUIRE(pool.submit(length_of, "abc").get() == 3);
  char const* const made_after_start = "made after the pool started";
  REQUIRE(pool.apply(length_of, made_after_start) == 27);
  REQUIRE(pool.apply(scaled, 1.5f, 4) == 6.0);
  REQUIRE(pool.apply([](std::string const& text) { return text.size(); }, "four") == 4);
}

TEST_CASE("the initializer runs once per worker, and workers are reused across calls") {
  xjob::start_method const method = GENERATE(xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn);
  CAPTURE(xjob::to_string(method));
  xjob::process_pool pool({.processes = 2, .start_method = method, .initializer = xjob::delayed(initialize)(42)});
  std::set<int> pids;
  std::set<int> indices;
  for (int round = 0; round < 3; ++round) {
    for (worker_view const& seen : pool.map(look_around, std::views::iota(0, 16), 1)) {
      REQUIRE(seen.initializer_runs == 1);
      REQUIRE(seen.initializer_value == 42);
      pids.insert(seen.pid);
      indices.insert(seen.index);
      REQUIRE(seen.pid != getpid());
    }
  }
  // The same (at most 2) workers ran every call; a slow starter may have
  // run none.
  REQUIRE(pids.size() <= 2);
  std::vector<int> const alive = pool.pids();
  for (int pid : pids) REQUIRE(std::find(alive.begin(), alive.end(), pid) != alive.end());
  for (int index : indices) REQUIRE((index == 0 || index == 1));
}

TEST_CASE("max_tasks_per_child replaces a worker after that many tasks") {
  xjob::process_pool pool({.processes = 1, .max_tasks_per_child = 2});
  std::map<int, int> tasks_per_pid;
  for (int i = 0; i < 8; ++i) ++tasks_per_pid[pool.submit(look_around, i).get().pid];
  REQUIRE(tasks_per_pid.size() == 4);
  for (auto const& [pid, count] : tasks_per_pid) REQUIRE(count == 2);
}

TEST_CASE("a throwing task fails only its future, with the task's index, type and message") {
  xjob::process_pool pool(2);
  auto failing = pool.submit(throw_on_seven, 7);
  XJOB_REQUIRE_THROWS_WITH_TEXT(failing.get(), xjob::task_error, "seven is out of range");
  try {
    failing.get();
  } catch (xjob::task_error const& e) {
    REQUIRE(e.type_name() == "std::out_of_range");
    REQUIRE(e.message() == "seven is out of range");
  }
  REQUIRE(pool.submit(throw_on_seven, 6).get() == 6);
  // In a map, the item's index in the input.
  try {
    (void)pool.map(throw_on_seven, std::views::iota(0, 20), 3);
    FAIL("map did not throw");
  } catch (xjob::task_error const& e) {
    REQUIRE(e.task_index() == 7);
    REQUIRE(e.type_name() == "std::out_of_range");
  }
  REQUIRE(pool.map(square, std::vector<int>{2, 3}) == std::vector<int>{4, 9});
}

TEST_CASE("a worker that crashes fails its task with worker_crashed and is replaced") {
  xjob::process_pool pool(2);
  std::vector<int> const before = pool.pids();
  auto crashed = pool.submit(crash_on, -1);
  try {
    (void)crashed.get();
    FAIL("no crash reported");
  } catch (xjob::worker_crashed const& e) {
    REQUIRE(e.signal() == SIGSEGV);
    REQUIRE(std::find(before.begin(), before.end(), e.pid()) != before.end());
    REQUIRE(std::string(e.what()).find("SIGSEGV") != std::string::npos);
  }
  REQUIRE(pool.map(crash_on, std::views::iota(0, 10)) == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  auto const deadline = std::chrono::steady_clock::now() + 5s;
  while (pool.pids().size() != 2 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  REQUIRE(pool.pids().size() == 2);
}

int crash_on_37(int x) {
  if (x == 37) xjob::testing::crash("SIGSEGV");
  return x;
}

TEST_CASE("map and imap name the item that crashed, not the first item of its chunk") {
  xjob::process_pool pool(2);
  auto const items = std::views::iota(0, 60);
  for (std::size_t chunksize : {std::size_t(1), std::size_t(13), std::size_t(60)}) {
    CAPTURE(chunksize);
    try {
      (void)pool.map(crash_on_37, items, chunksize);
      FAIL("map did not throw");
    } catch (xjob::worker_crashed const& e) {
      REQUIRE(e.task_index() == std::optional<std::size_t>(37));
      REQUIRE(e.signal() == SIGSEGV);
    }
    try {
      for (int v : pool.imap(crash_on_37, items, chunksize)) REQUIRE(v < 37);
      FAIL("imap did not throw");
    } catch (xjob::worker_crashed const& e) {
      REQUIRE(e.task_index() == std::optional<std::size_t>(37));
    }
  }
  // A plain task after a chunk is its own task, not an item of the last chunk.
  auto crashed = pool.submit(crash_on, -1);
  REQUIRE_THROWS_AS(crashed.get(), xjob::worker_crashed);
}

TEST_CASE("a worker whose socket closes while it lives is killed, not waited for forever") {
  xjob::process_pool pool(1);
  auto const start = std::chrono::steady_clock::now();
  try {
    (void)pool.submit(close_everything_and_wait, 0).get();
    FAIL("no failure reported");
  } catch (xjob::worker_crashed const& e) {
    REQUIRE(e.signal() == SIGKILL);
  }
  REQUIRE(std::chrono::steady_clock::now() - start < 10s);
  REQUIRE(pool.submit(square, 5).get() == 25);
}

TEST_CASE("a task not yet started can be cancelled; a running one cannot") {
  xjob::process_pool pool(1);
  auto running = pool.submit(slow_identity, 300);
  auto waiting = pool.submit(slow_identity, 1);
  auto const deadline = std::chrono::steady_clock::now() + 5s;
  while (!running.running() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
  REQUIRE(running.running());
  REQUIRE_FALSE(running.cancel());
  REQUIRE(waiting.cancel());
  REQUIRE(waiting.cancelled());
  REQUIRE_THROWS_AS(waiting.get(), xjob::task_cancelled);
  REQUIRE(running.get() == 300);
}

TEST_CASE("wait and as_completed follow the order in which tasks finish") {
  xjob::process_pool pool(3);
  std::vector<xjob::pool_future<int>> futures;
  for (int ms : {400, 10, 200}) futures.push_back(pool.submit(slow_identity, ms));
  auto const first = xjob::wait(futures, xjob::return_when::first_completed);
  REQUIRE(std::find(first.done.begin(), first.done.end(), 1) != first.done.end());
  REQUIRE(first.not_done.size() + first.done.size() == 3);
  std::vector<int> order;
  for (auto& f : xjob::as_completed(futures)) order.push_back(f.get());
  REQUIRE(order == std::vector<int>{10, 200, 400});
  auto const all = xjob::wait(futures);
  REQUIRE(all.done.size() == 3);

  auto slow = pool.submit(slow_identity, 500);
  std::vector<xjob::pool_future<int>> one = {slow};
  auto const timed = xjob::wait(one, xjob::return_when::all_completed, 20ms);
  REQUIRE(timed.not_done == std::vector<std::size_t>{0});
  REQUIRE_THROWS_AS([&] { for (auto& f : xjob::as_completed(one, 20ms)) (void)f; }(), xjob::timeout_error);
  REQUIRE(slow.get() == 500);
}

TEST_CASE("resize grows and shrinks the pool") {
  xjob::process_pool pool(1);
  pool.resize(3);
  REQUIRE(pool.size() == 3);
  auto wait_for_count = [&](std::size_t n) {
    auto const deadline = std::chrono::steady_clock::now() + 10s;
    while (pool.pids().size() != n && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    return pool.pids().size();
  };
  REQUIRE(wait_for_count(3) == 3);
  pool.resize(1);
  REQUIRE(wait_for_count(1) == 1);
  REQUIRE(pool.map(square, std::views::iota(0, 5)) == std::vector<int>{0, 1, 4, 9, 16});
  REQUIRE_THROWS_AS(pool.resize(0), xjob::invalid_argument);
}

TEST_CASE("shutdown finishes, cancels or kills what is pending, and the pool then refuses tasks") {
  SECTION("finish_pending") {
    xjob::process_pool pool(1);
    auto a = pool.submit(slow_identity, 50);
    auto b = pool.submit(slow_identity, 20);
    pool.shutdown();
    REQUIRE(a.get() == 50);
    REQUIRE(b.get() == 20);
    REQUIRE(pool.pids().empty());
    REQUIRE_THROWS_AS((void)pool.submit(square, 2), xjob::pool_broken);
  }
  SECTION("cancel_pending") {
    xjob::process_pool pool(1);
    auto a = pool.submit(slow_identity, 200);
    auto const deadline = std::chrono::steady_clock::now() + 5s;
    while (!a.running() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    auto b = pool.submit(slow_identity, 20);
    pool.shutdown(xjob::shutdown_mode::cancel_pending);
    REQUIRE(a.get() == 200);
    REQUIRE(b.cancelled());
  }
  SECTION("kill_workers") {
    xjob::process_pool pool(1);
    auto a = pool.submit(slow_identity, 10'000);
    auto const deadline = std::chrono::steady_clock::now() + 5s;
    while (!a.running() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(1ms);
    auto const start = std::chrono::steady_clock::now();
    pool.shutdown(xjob::shutdown_mode::kill_workers);
    REQUIRE(std::chrono::steady_clock::now() - start < 5s);
    REQUIRE_THROWS_AS(a.get(), xjob::pool_broken);
  }
}

TEST_CASE("idle workers exit after idle_timeout and come back for new work") {
  xjob::process_pool pool({.processes = 2, .idle_timeout = 50ms});
  REQUIRE(pool.map(square, std::views::iota(0, 4)) == std::vector<int>{0, 1, 4, 9});
  auto const deadline = std::chrono::steady_clock::now() + 5s;
  while (!pool.pids().empty() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
  REQUIRE(pool.pids().empty());
  REQUIRE(pool.submit(square, 9).get() == 81);
}

// Every run of a task appends its item to this file (set in each worker by
// the pool's initializer), so that a test can count runs across workers.
std::string run_log;

void set_run_log(std::string path) { run_log = std::move(path); }

std::size_t runs_of(std::string const& path, int item) {
  std::ifstream log(path);
  std::size_t runs = 0;
  for (int logged = 0; log >> logged;) runs += logged == item ? 1 : 0;
  return runs;
}

void log_run(int item) {
  int const fd = open(run_log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  std::string const line = std::to_string(item) + "\n";
  [[maybe_unused]] ssize_t const written = write(fd, line.data(), line.size());
  close(fd);
}

// Item 37 crashes its worker on its first run only.
int crash_37_once(int x) {
  log_run(x);
  if (x == 37 && runs_of(run_log, 37) == 1) xjob::testing::crash("SIGSEGV");
  return 2 * x;
}

// Item 37 crashes its worker on every run.
int crash_37_always(int x) {
  log_run(x);
  if (x == 37) xjob::testing::crash("SIGKILL");
  return 2 * x;
}

// Item 5 hangs on its first run only.
int hang_5_once(int x) {
  log_run(x);
  if (x == 5 && runs_of(run_log, 5) == 1) std::this_thread::sleep_for(60s);
  return x;
}

TEST_CASE("retries re-run only the map item whose worker died, never one that finished") {
  auto const method = GENERATE(xjob::start_method::fork, xjob::start_method::spawn);
  CAPTURE(xjob::to_string(method));
  xjob::testing::temp_dir dir;
  std::string const log = (dir / "runs").string();
  xjob::process_pool pool({.processes = 2, .start_method = method, .initializer = xjob::delayed(set_run_log)(log),
                           .retries = 1});
  std::vector<int> expected;
  for (int i = 0; i < 60; ++i) expected.push_back(2 * i);
  REQUIRE(pool.map(crash_37_once, std::views::iota(0, 60), 13) == expected);
  for (int i = 0; i < 60; ++i) {
    CAPTURE(i);
    REQUIRE(runs_of(log, i) == (i == 37 ? 2u : 1u));
  }
  // A plain task that crashes its worker runs again as a whole.
  std::filesystem::remove(log);
  REQUIRE(pool.submit(crash_37_once, 37).get() == 74);
  REQUIRE(runs_of(log, 37) == 2);
}

TEST_CASE("when retries run out, worker_crashed names the item and how often it ran") {
  xjob::testing::temp_dir dir;
  std::string const log = (dir / "runs").string();
  xjob::process_pool pool({.processes = 2, .initializer = xjob::delayed(set_run_log)(log), .retries = 2});
  try {
    (void)pool.map(crash_37_always, std::views::iota(0, 60), 20);
    FAIL("map did not throw");
  } catch (xjob::worker_crashed const& e) {
    REQUIRE(e.task_index() == std::optional<std::size_t>(37));
    REQUIRE(e.signal() == SIGKILL);
    REQUIRE(e.attempts() == 3);
  }
  REQUIRE(runs_of(log, 37) == 3);
  REQUIRE(pool.map(square, std::vector<int>{2, 3}) == std::vector<int>{4, 9});
}

TEST_CASE("task_timeout kills only the stuck worker and names the item; with retries the item runs again") {
  xjob::testing::temp_dir dir;
  std::string const log = (dir / "runs").string();
  {
    xjob::process_pool pool({.processes = 2, .initializer = xjob::delayed(set_run_log)(log), .task_timeout = 0.3s});
    auto const start = std::chrono::steady_clock::now();
    try {
      (void)pool.map(hang_5_once, std::views::iota(0, 10), 4);
      FAIL("map did not throw");
    } catch (xjob::timeout_error const& e) {
      REQUIRE(e.task_index() == std::optional<std::size_t>(5));
    }
    REQUIRE(std::chrono::steady_clock::now() - start < 20s);
    REQUIRE(pool.map(square, std::vector<int>{2, 3}) == std::vector<int>{4, 9});
  }
  std::filesystem::remove(log);
  xjob::process_pool pool(
      {.processes = 2, .initializer = xjob::delayed(set_run_log)(log), .retries = 1, .task_timeout = 0.3s});
  std::vector<int> expected(10);
  std::iota(expected.begin(), expected.end(), 0);
  REQUIRE(pool.map(hang_5_once, std::views::iota(0, 10), 4) == expected);
  REQUIRE(runs_of(log, 5) == 2);
  REQUIRE(runs_of(log, 4) == 1);
  REQUIRE_THROWS_AS(xjob::process_pool({.processes = 1, .retries = -1}), xjob::invalid_argument);
  REQUIRE_THROWS_AS(xjob::process_pool({.processes = 1, .task_timeout = 0s}), xjob::invalid_argument);
}

// Kills its worker the first time it runs in the pool whose log is `path`.
void die_in_first_initializer(std::string path) {
  set_run_log(path);
  log_run(-1);
  if (runs_of(path, -1) == 1) raise(SIGKILL);
}

void always_die_in_initializer() { raise(SIGKILL); }

TEST_CASE("a worker that dies while starting is started again with backoff before the pool is declared broken") {
  xjob::testing::temp_dir dir;
  std::string const log = (dir / "runs").string();
  {
    xjob::process_pool pool({.processes = 1, .initializer = xjob::delayed(die_in_first_initializer)(log)});
    REQUIRE(pool.map(square, std::vector<int>{2, 3}) == std::vector<int>{4, 9});
    REQUIRE(runs_of(log, -1) == 2);
  }
  xjob::process_pool pool({.processes = 1, .initializer = xjob::pool_initializer(always_die_in_initializer)});
  try {
    (void)pool.submit(square, 2).get();
    FAIL("no pool_broken");
  } catch (xjob::pool_broken const& e) {
    REQUIRE_THAT(std::string(e.what()), Catch::Contains("died while starting") && Catch::Contains("5 failed starts"));
  }
}

void scale_in_place(xjob::shared_array<double> const& a, double factor) {
  for (double& v : a) v *= factor;
}

double sum_of_array(xjob::shared_array<double const> const& a) {
  double total = 0;
  for (double v : a) total += v;
  return total;
}

void push_twice(xjob::ipc::queue<int>& q, int value) {
  q.push(value);
  q.push(value * 2);
}

TEST_CASE("a shared_array and the ipc objects travel to pool workers by name: the same memory, not a copy") {
  auto const method = GENERATE(xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn);
  CAPTURE(xjob::to_string(method));
  xjob::process_pool pool({.processes = 2, .start_method = method});
  xjob::shared_array<double> a({1000});
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = static_cast<double>(i);
  pool.submit(scale_in_place, a, 2.0).get();
  for (std::size_t i = 0; i < a.size(); ++i) REQUIRE(a.data()[i] == 2.0 * static_cast<double>(i));
  // A .npy file's array, read-only in the worker.
  xjob::testing::temp_dir dir;
  {
    auto out = xjob::shared_array<double>::create_npy(dir / "x.npy", {10});
    for (std::size_t i = 0; i < 10; ++i) out.data()[i] = 1.5;
    out.commit();
  }
  auto const file = xjob::shared_array<double const>::open_npy(dir / "x.npy");
  REQUIRE(pool.submit(sum_of_array, file).get() == 15.0);
  // An empty array travels too.
  REQUIRE(pool.submit(sum_of_array, xjob::shared_array<double const>()).get() == 0.0);
  xjob::ipc::queue<int> q(8);
  pool.submit(push_twice, q, 21).get();
  REQUIRE(q.pop() == 21);
  REQUIRE(q.pop() == 42);
  // A name whose array is gone is refused with a message that says why.
  REQUIRE_THROWS_WITH(xjob::detail::mapped_region::attach("xjob-region:1:999999:1", xjob::detail::region_access::read_only),
                      Catch::Contains("is gone or no longer holds it"));
  REQUIRE_THROWS_WITH(xjob::detail::mapped_region::attach("shm:1", xjob::detail::region_access::read_only),
                      Catch::Contains("not a name of the form"));
}

double sum_of_tensor(xt::xtensor<double, 1> const& x) { return xt::sum(x)(); }

TEST_CASE("a large xtensor argument goes through shared memory, not through the worker's socket") {
  auto const method = GENERATE(xjob::start_method::fork, xjob::start_method::spawn);
  CAPTURE(xjob::to_string(method));
  xjob::process_pool pool({.processes = 2, .start_method = method});
  xt::xtensor<double, 1> const big = xt::arange<double>(1 << 18);  // 2 MiB
  xt::xtensor<double, 1> const small = xt::arange<double>(100);
  double const expected = (double(1 << 18) - 1) * double(1 << 18) / 2;
  REQUIRE(pool.submit(sum_of_tensor, big).get() == expected);
  REQUIRE(pool.submit(sum_of_tensor, small).get() == 4950.0);
  std::vector<xt::xtensor<double, 1>> const items{big, small, big};
  REQUIRE(pool.map(sum_of_tensor, items, 1) == std::vector<double>{expected, 4950.0, expected});
  // What travels: the big one's name, not its 2 MiB; the small one inline.
  xjob::detail::staged_blocks staged;
  {
    xjob::detail::staging_scope const scope(staged);
    auto const call = xjob::detail::make_remote_call(sum_of_tensor, big);
    REQUIRE(call.arguments.size() < 200);
    auto const inline_call = xjob::detail::make_remote_call(sum_of_tensor, small);
    REQUIRE(inline_call.arguments.size() > 800);
  }
  REQUIRE(staged.keep.size() == 1);
}

TEST_CASE("an initializer that throws breaks the pool with its message") {
  xjob::process_pool pool({.processes = 1, .initializer = xjob::pool_initializer(failing_initializer)});
  // Whether the task was queued before the worker failed or not, it fails.
  XJOB_REQUIRE_THROWS_WITH_TEXT(pool.submit(square, 3).get(), xjob::pool_broken, "cannot load the model");
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)pool.submit(square, 3), xjob::pool_broken, "initializer failed");
}

TEST_CASE("bad worker counts are refused") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::process_pool(0), xjob::invalid_argument, "n_jobs must not be 0");
}

TEST_CASE("a forked copy of the pool's owner cannot use the pool: it gets an error naming both pids at once") {
  xjob::process_pool pool({.processes = 1});
  REQUIRE(pool.apply(square, 3) == 9);
  pid_t const owner = getpid();
  // The child's exit code says what it saw: 0 the error as expected; 1 a
  // task accepted (whose future would never complete); 2 to 4 an error
  // without the owner's pid, without the child's, or not an xjob::error.
  auto try_in_child = [&](auto use) {
    xjob::testing::child_process child([&] {
      try {
        use();
        return 1;
      } catch (xjob::error const& e) {
        std::string const text = e.what();
        if (text.find("process " + std::to_string(owner)) == std::string::npos) return 2;
        if (text.find("process " + std::to_string(getpid())) == std::string::npos) return 3;
        return 0;
      } catch (...) {
        return 4;
      }
    });
    return child.wait();
  };
  REQUIRE(try_in_child([&] { (void)pool.submit(square, 4); }) == 0);
  REQUIRE(try_in_child([&] { (void)pool.map(square, std::views::iota(0, 4)); }) == 0);
  REQUIRE(try_in_child([&] { pool.resize(2); }) == 0);
  // The owner's pool is untouched.
  REQUIRE(pool.apply(square, 5) == 25);
}

// A daemon closes stdin and stdout. Descriptors the pool makes then must
// not land on 0 or 1: a worker forked later would take the caller's socket
// to another worker as its stdout, and its printf would go into that
// worker's command stream. (Not forkserver: its workers are clones of the
// fork server, which init() started while stdin and stdout were open.)
TEST_CASE("in a program without stdin and stdout, a worker's printf never reaches another worker's channel") {
  xjob::start_method const method = GENERATE(xjob::start_method::fork, xjob::start_method::spawn);
  CAPTURE(xjob::to_string(method));
  std::vector<int> results;
  std::string const failure = xjob::testing::without_stdin_and_stdout([&] {
    xjob::process_pool pool({.processes = 2, .start_method = method});
    std::vector<xjob::pool_future<int>> futures;
    for (int i = 0; i < 16; ++i) futures.push_back(i % 4 == 0 ? pool.submit(chatty_double, i) : pool.submit(square, i));
    for (auto& future : futures) {
      if (!future.wait_for(10s)) {
        pool.shutdown(xjob::shutdown_mode::kill_workers);
        throw std::runtime_error("a task never completed");
      }
      results.push_back(future.get());
    }
  });
  REQUIRE(failure.empty());
  std::vector<int> expected;
  for (int i = 0; i < 16; ++i) expected.push_back(i % 4 == 0 ? 2 * i : i * i);
  REQUIRE(results == expected);
}

TEST_CASE("a pool leaves no child, descriptor or shared memory behind, whatever happened") {
  xjob::start_method const method = GENERATE(xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn);
  CAPTURE(xjob::to_string(method));
  xjob::testing::process_resources const before;
  {
    xjob::process_pool pool({.processes = 2, .start_method = method});
    REQUIRE(pool.map(square, std::views::iota(0, 50)) .size() == 50);
    REQUIRE_THROWS_AS(pool.submit(crash_on, -1).get(), xjob::worker_crashed);
    REQUIRE_THROWS_AS(pool.submit(throw_on_seven, 7).get(), xjob::task_error);
  }
  xjob::testing::require_nothing_left(before);
}

int main(int argc, char** argv) {
  xjob::init(argc, argv);
  return Catch::Session().run(argc, argv);
}
