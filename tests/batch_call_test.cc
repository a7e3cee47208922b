#include <xjob/batch_call.hpp>

#include <algorithm>
#include <mutex>
#include <regex>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>
#include <xjob/parallel.hpp>

namespace {

// Records every batch a call hands out.
struct batch_log {
  std::mutex mutex;
  std::vector<xjob::batch_range> batches;
  void add(xjob::batch_range r) {
    std::lock_guard lock(mutex);
    batches.push_back(r);
  }
};

std::vector<xjob::batch_range> run_logged(std::size_t tasks, xjob::batch_call::settings settings,
                                          std::chrono::nanoseconds task_time = {}) {
  batch_log log;
  settings.on_batch_done = [&log](xjob::batch_range r) { log.add(r); };
  // Whole batches by the call's end: an urgent listener would make the
  // workers run each batch task by task and report parts of it.
  settings.batch_done_is_urgent = false;
  xjob::detail::task_loop loop([task_time](std::size_t) {
    if (task_time.count() > 0) {
      auto const until = std::chrono::steady_clock::now() + task_time;
      while (std::chrono::steady_clock::now() < until) {
      }
    }
  });
  xjob::batch_call call(loop, tasks, settings);
  std::vector<std::jthread> threads;
  for (int w = 1; w < settings.workers; ++w) threads.emplace_back([&call, w] { call.work(w); });
  call.work(0);
  threads.clear();
  std::sort(log.batches.begin(), log.batches.end(), [](auto a, auto b) { return a.begin < b.begin; });
  return log.batches;
}

void require_exact_cover(std::vector<xjob::batch_range> const& batches, std::size_t tasks) {
  std::size_t next = 0;
  for (auto const& b : batches) {
    REQUIRE(b.begin == next);
    REQUIRE(b.end > b.begin);
    next = b.end;
  }
  REQUIRE(next == tasks);
}

}  // namespace

TEST_CASE("fixed batch sizes are respected and cover every task once") {
  auto const batches = run_logged(103, {.workers = 3, .batch_size = 10});
  require_exact_cover(batches, 103);
  REQUIRE(batches.size() == 11);
  for (std::size_t i = 0; i + 1 < batches.size(); ++i) REQUIRE(batches[i].size() == 10);
  REQUIRE(batches.back().size() == 3);
}

TEST_CASE("automatic batches of tiny tasks grow far beyond one task") {
  std::size_t const tasks = 1'000'000;
  auto const batches = run_logged(tasks, {.workers = 2});
  require_exact_cover(batches, tasks);
  REQUIRE(batches.size() < 2000);  // one batch per task would be 10^6
  REQUIRE(std::max_element(batches.begin(), batches.end(), [](auto a, auto b) { return a.size() < b.size(); })
              ->size() > 1000);
}

TEST_CASE("automatic batches of slow tasks stay small so the load balances") {
  // 200 us per task, the target duration: batches of one or two tasks.
  auto const batches =
      run_logged(60, {.workers = 2, .target_batch_duration = std::chrono::microseconds(200)},
                 std::chrono::microseconds(400));
  require_exact_cover(batches, 60);
  for (auto const& b : batches) REQUIRE(b.size() <= 2);
}

TEST_CASE("automatic batches shrink near the end: none takes more than half a fair share") {
  std::size_t const tasks = 100'000;
  auto const batches = run_logged(tasks, {.workers = 2});
  for (auto const& b : batches) REQUIRE(b.size() <= std::max<std::size_t>(1, (tasks - b.begin) / 4 + 1));
}

TEST_CASE("progress callbacks see every task, in increasing counts, never at once") {
  // Catch2's assertions are not thread-safe: record, then check here.
  std::size_t last = 0;
  std::size_t calls = 0;
  bool overlapped = false;
  bool wrong_total = false;
  bool went_back = false;
  std::atomic<int> inside{0};
  xjob::parallel par({.n_jobs = 3,
                      .backend = "threads",
                      .batch_size = 4,
                      .on_progress = [&](xjob::progress const& p) {
                        if (inside.fetch_add(1) != 0) overlapped = true;
                        if (p.total != 100) wrong_total = true;
                        if (p.done <= last) went_back = true;
                        last = p.done;
                        ++calls;
                        inside.fetch_sub(1);
                      }});
  par.map([](int i) { return i; }, std::views::iota(0, 100));
  REQUIRE(last == 100);
  REQUIRE(calls == 25);
  REQUIRE_FALSE(overlapped);
  REQUIRE_FALSE(wrong_total);
  REQUIRE_FALSE(went_back);
}

TEST_CASE("verbose prints joblib-style progress lines on stderr") {
  xjob::testing::captured_stderr err;
  xjob::parallel par({.n_jobs = 2, .backend = "threads", .batch_size = 10, .verbose = 10});
  par.map([](int i) { return i; }, std::views::iota(0, 100));
  std::string const text = err.text();
  REQUIRE(text.find("[parallel(n_jobs=2)]: Using backend threads with 2 concurrent workers.") != std::string::npos);
  REQUIRE(std::regex_search(text, std::regex(R"(\[parallel\(n_jobs=2\)\]: Done  \d\d out of 100 \| elapsed: \d+\.\ds remaining: \d+\.\ds)")));
  REQUIRE(text.find("Done 100 out of 100 | elapsed: ") != std::string::npos);
  REQUIRE(text.find("finished") != std::string::npos);
}

TEST_CASE("lower verbose levels print fewer lines; zero prints nothing") {
  auto lines_at = [](int verbose) {
    xjob::testing::captured_stderr err;
    xjob::parallel par({.n_jobs = 2, .backend = "threads", .batch_size = 1, .verbose = verbose});
    par.map([](int i) { return i; }, std::views::iota(0, 1000));
    std::string const text = err.text();
    return std::count(text.begin(), text.end(), '\n');
  };
  auto const quiet = lines_at(0);
  auto const some = lines_at(1);
  auto const all = lines_at(10);
  REQUIRE(quiet == 0);
  REQUIRE(some >= 3);
  REQUIRE(some < 30);
  REQUIRE(all > 900);
}

TEST_CASE("a throwing progress callback fails the call instead of terminating") {
  xjob::parallel par({.n_jobs = 2,
                      .backend = "threads",
                      .on_progress = [](xjob::progress const&) { throw std::runtime_error("callback broke"); }});
  XJOB_REQUIRE_THROWS_WITH_TEXT(par.map([](int i) { return i; }, std::views::iota(0, 10)), xjob::task_error,
                                "callback broke");
}
