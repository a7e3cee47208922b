// The front end as users write it (the examples), and its contracts:
// input order, sequential fallback, shared backends, nested and concurrent use.
#include <xjob/parallel.hpp>

#include <atomic>
#include <mutex>
#include <ranges>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/cpu_count.hpp>

namespace {
std::pair<int, unsigned __int128> task(int idx, long count) {
  unsigned __int128 sum = 0;
  for (long i = 0; i < count; ++i) sum += static_cast<unsigned __int128>(i) * static_cast<unsigned __int128>(i);
  return {idx, sum};
}
}  // namespace

TEST_CASE("joblib's Parallel(n_jobs=4)(delayed(task)(i, c) for i, c in jobs), in C++") {
  std::vector<std::pair<int, long>> jobs = {{1, 100000}, {2, 100000}, {3, 100000}, {4, 100000}};
  auto results = xjob::parallel(4)(jobs | std::views::transform([](auto const& j) {
                                     return xjob::delayed(task)(j.first, j.second);
                                   }));
  REQUIRE(results.size() == 4);
  // sum of i^2 for i < n is (n-1) n (2n-1) / 6
  unsigned __int128 const n = 100000;
  for (int k = 0; k < 4; ++k) {
    REQUIRE(results[static_cast<std::size_t>(k)].first == k + 1);
    REQUIRE(results[static_cast<std::size_t>(k)].second == (n - 1) * n * (2 * n - 1) / 6);
  }
}

namespace {
std::atomic<int> calls_made{0};
int calls_made_so_far(int) { return calls_made.load(); }
}  // namespace

TEST_CASE("delayed calls made from iota by a captureless function are made where they run; others first, in order") {
  xjob::parallel par({.n_jobs = 1, .backend = "sequential"});
  auto const items = std::views::iota(0, 100);
  // In place: call i is made just before it runs.
  calls_made = 0;
  auto const lazily = par(items | std::views::transform([](int i) {
                            calls_made.fetch_add(1);
                            return xjob::delayed(calls_made_so_far)(i);
                          }));
  for (int i = 0; i < 100; ++i) REQUIRE(lazily[static_cast<std::size_t>(i)] == i + 1);
  // A function with captures makes every call first, in order, in the caller.
  calls_made = 0;
  std::vector<int> order;
  auto const eagerly = par(items | std::views::transform([&order](int i) {
                             order.push_back(i);
                             calls_made.fetch_add(1);
                             return xjob::delayed(calls_made_so_far)(i);
                           }));
  REQUIRE(eagerly == std::vector<int>(100, 100));
  REQUIRE(std::ranges::equal(order, items));
  // A vector of calls is read where it is, on threads too.
  std::vector<decltype(xjob::delayed(calls_made_so_far)(0))> made;
  for (int i = 0; i < 1000; ++i) made.push_back(xjob::delayed(calls_made_so_far)(i));
  REQUIRE(xjob::parallel({.n_jobs = 2, .backend = "threads"})(made) == std::vector<int>(1000, 100));
}

TEST_CASE("map over a range returns results in input order") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  std::vector<int> squares = par.map([](int i) { return i * i; }, std::views::iota(0, 20));
  REQUIRE(squares == std::vector<int>{0,   1,   4,   9,   16,  25,  36,  49,  64,  81,
                                      100, 121, 144, 169, 196, 225, 256, 289, 324, 361});
}

TEST_CASE("map takes ranges that are not random-access") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto odd = std::views::iota(0, 40) | std::views::filter([](int i) { return i % 2 == 1; });
  auto const out = par.map([](int i) { return i + 1; }, odd);
  REQUIRE(out.size() == 20);
  REQUIRE(out.front() == 2);
  REQUIRE(out.back() == 40);
}

TEST_CASE("one job runs sequentially on the caller's thread, whatever the backend") {
  xjob::parallel par({.n_jobs = 1, .backend = "threads"});
  REQUIRE(par.backend_name() == "sequential");
  auto const caller = std::this_thread::get_id();
  auto const ids = par.map([](int) { return std::this_thread::get_id(); }, std::views::iota(0, 10));
  for (auto id : ids) REQUIRE(id == caller);
}

TEST_CASE("the threads backend uses several threads") {
  // Each task waits (up to 10 s) until a second thread has run a task, so
  // the test does not depend on how fast a loaded machine wakes a worker.
  std::mutex mutex;
  std::set<std::thread::id> threads;
  xjob::parallel par({.n_jobs = 2, .backend = "threads", .batch_size = 1});
  par.map(
      [&](int) {
        auto const give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        for (;;) {
          {
            std::lock_guard lock(mutex);
            threads.insert(std::this_thread::get_id());
            if (threads.size() >= 2) return;
          }
          if (std::chrono::steady_clock::now() > give_up) return;
          std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
      },
      std::views::iota(0, 40));
  REQUIRE(threads.size() == 2);
}

TEST_CASE("copies of a parallel object share one backend and can be used from several threads at once") {
  xjob::parallel const par({.n_jobs = 2, .backend = "threads"});
  xjob::parallel const copy = par;
  std::atomic<long> total{0};
  std::vector<std::jthread> callers;
  for (int t = 0; t < 4; ++t)
    callers.emplace_back([&, t] {
      auto const& p = t % 2 == 0 ? par : copy;
      for (int round = 0; round < 20; ++round) {
        auto const out = p.map([](int i) { return static_cast<long>(i); }, std::views::iota(0, 1000));
        long sum = 0;
        for (long v : out) sum += v;
        total += sum;
      }
    });
  callers.clear();
  REQUIRE(total.load() == 4L * 20L * 499500L);
}

TEST_CASE("a task may run a parallel call of its own") {
  xjob::parallel outer({.n_jobs = 2, .backend = "threads"});
  auto const sums = outer.map(
      [](int i) {
        xjob::parallel inner({.n_jobs = 2, .backend = "threads"});
        auto const parts = inner.map([i](int j) { return i * j; }, std::views::iota(0, 100));
        long sum = 0;
        for (int v : parts) sum += v;
        return sum;
      },
      std::views::iota(0, 8));
  for (int i = 0; i < 8; ++i) REQUIRE(sums[static_cast<std::size_t>(i)] == i * 4950L);
}

TEST_CASE("options report what the call will really use") {
  xjob::parallel par({.n_jobs = -1, .backend = "threads"});
  REQUIRE(par.n_jobs() == xjob::cpu_count());
  REQUIRE(par.backend_name() == (xjob::cpu_count() == 1 ? "sequential" : "threads"));
  REQUIRE(xjob::parallel().n_jobs() == 1);
}
