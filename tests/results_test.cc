#include <xjob/results.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <xjob/errors.hpp>
#include <xjob/parallel.hpp>

namespace {
int slow_square(int i) {
  std::this_thread::sleep_for(std::chrono::microseconds((i * 37) % 500));
  return i * i;
}
}  // namespace

TEST_CASE("an ordered stream yields every result in input order") {
  auto const backend = GENERATE(std::string("sequential"), std::string("threads"));
  xjob::parallel par({.n_jobs = 3, .backend = backend, .batch_size = 2});
  auto calls = std::views::iota(0, 200) | std::views::transform([](int i) { return xjob::delayed(slow_square)(i); });
  std::vector<int> seen;
  for (int value : par(calls, xjob::return_as_generator)) seen.push_back(value);
  REQUIRE(seen.size() == 200);
  for (int i = 0; i < 200; ++i) REQUIRE(seen[static_cast<std::size_t>(i)] == i * i);
}

TEST_CASE("an unordered stream yields every result once, with its index") {
  xjob::parallel par({.n_jobs = 3, .backend = "threads", .batch_size = 1});
  std::set<std::size_t> indices;
  for (auto [index, value] : par.map(slow_square, std::views::iota(0, 300), xjob::return_as_generator_unordered)) {
    REQUIRE(value == static_cast<int>(index * index));
    REQUIRE(indices.insert(index).second);
  }
  REQUIRE(indices.size() == 300);
}

TEST_CASE("an unordered stream gives early results before late ones finish") {
  // Task 0 waits until some other result has been consumed; in input order
  // that could never finish, in completion order it must.
  std::atomic<bool> consumed_other{false};
  xjob::parallel par({.n_jobs = 2, .backend = "threads", .batch_size = 1});
  auto body = [&consumed_other](int i) {
    if (i == 0) {
      auto const give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!consumed_other.load() && std::chrono::steady_clock::now() < give_up)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      return consumed_other.load() ? 1 : -1;
    }
    return 0;
  };
  int first_result = 99;
  for (auto [index, value] : par.map(body, std::views::iota(0, 4), xjob::return_as_generator_unordered)) {
    if (index != 0) consumed_other = true;
    else first_result = value;
  }
  REQUIRE(first_result == 1);
}

TEST_CASE("results are consumed while later tasks still run") {
  std::atomic<int> finished{0};
  xjob::parallel par({.n_jobs = 2, .backend = "threads", .batch_size = 1});
  auto body = [&finished](int i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    finished.fetch_add(1);
    return i;
  };
  auto stream = par.map(body, std::views::iota(0, 20), xjob::return_as_generator);
  auto it = stream.begin();
  REQUIRE(*it == 0);
  REQUIRE(finished.load() < 20);  // the first result came long before the last
}

TEST_CASE("a failing task is thrown when the ordered stream reaches it, after the results before it") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads", .batch_size = 1});
  auto body = [](int i) {
    if (i == 5) throw std::runtime_error("five");
    return i;
  };
  std::vector<int> seen;
  try {
    for (int value : par.map(body, std::views::iota(0, 50), xjob::return_as_generator)) seen.push_back(value);
    FAIL("no exception");
  } catch (xjob::task_error const& e) {
    REQUIRE(e.task_index() == 5);
    REQUIRE(e.message() == "five");
  }
  REQUIRE(seen == std::vector<int>{0, 1, 2, 3, 4});
}

TEST_CASE("an unordered stream throws the failure after what completed") {
  xjob::parallel par({.n_jobs = 2, .backend = "threads"});
  auto body = [](int i) {
    if (i == 30) throw std::logic_error("thirty");
    return i;
  };
  REQUIRE_THROWS_AS(
      [&] {
        for ([[maybe_unused]] auto r : par.map(body, std::views::iota(0, 100), xjob::return_as_generator_unordered)) {
        }
      }(),
      xjob::task_error);
}

TEST_CASE("dropping a stream early cancels the tasks not yet started") {
  std::atomic<int> started{0};
  {
    xjob::parallel par({.n_jobs = 2, .backend = "threads", .batch_size = 1});
    auto stream = par.map(
        [&started](int i) {
          started.fetch_add(1);
          std::this_thread::sleep_for(std::chrono::milliseconds(5));
          return i;
        },
        std::views::iota(0, 1000), xjob::return_as_generator);
    auto it = stream.begin();
    REQUIRE(*it == 0);
  }
  int const at_drop = started.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  REQUIRE(started.load() == at_drop);  // nothing runs after the stream is gone
  REQUIRE(at_drop < 1000);
}

TEST_CASE("a stream outlives the parallel object and the input it was made from") {
  auto make = [] {
    xjob::parallel par({.n_jobs = 2, .backend = "threads"});
    std::vector<int> inputs = {1, 2, 3, 4};
    return par.map([](int i) { return i * 10; }, inputs, xjob::return_as_generator);
  };
  auto stream = make();
  std::vector<int> out;
  for (int v : stream) out.push_back(v);
  REQUIRE(out == std::vector<int>{10, 20, 30, 40});
}
