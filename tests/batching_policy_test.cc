// batching_policy, driven by a made-up clock: batch sizes cover the tasks
// exactly once in bounds, a learned size moves at most twofold per batch and
// settles where batches last the target, and the guided cap lets workers
// finish together.
#include <xjob/batching_policy.hpp>

#include <chrono>
#include <cstddef>
#include <random>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.hpp"
#include <xjob/errors.hpp>

using namespace std::chrono_literals;

namespace {

// Deals `task_count` tasks to `workers` workers taking turns, each with its
// own learned size; task i costs `cost(i)`. Checks the properties every
// dealing must have and returns the batch sizes in order.
template <class Cost>
std::vector<std::size_t> deal(xjob::batching_policy const& policy, std::size_t task_count, int workers, Cost cost) {
  std::vector<std::size_t> learned(static_cast<std::size_t>(workers), 1);
  std::vector<std::size_t> sizes;
  std::vector<int> seen(task_count, 0);
  std::size_t next = 0;
  for (std::size_t turn = 0;; ++turn) {
    std::size_t& mine = learned[turn % learned.size()];
    std::size_t const size = policy.batch_size(next, task_count, mine);
    if (next >= task_count) {
      REQUIRE(size == 0);
      break;
    }
    REQUIRE(size >= 1);
    REQUIRE(next + size <= task_count);  // never past the end
    if (policy.is_automatic()) REQUIRE(size <= std::max<std::size_t>(mine, 1));
    std::chrono::nanoseconds took{0};
    for (std::size_t i = next; i < next + size; ++i) {
      ++seen[i];
      took += cost(i);
    }
    std::size_t const before = mine;
    mine = policy.learn(mine, size, size, took);
    REQUIRE(mine >= 1);
    if (policy.is_automatic()) {
      REQUIRE(mine * 2 + 1 >= before);  // at most twofold per batch (rounded down)
      REQUIRE(mine <= std::max<std::size_t>(before, 1) * 2);
    } else {
      REQUIRE(mine == before);
    }
    sizes.push_back(size);
    next += size;
  }
  for (int count : seen) REQUIRE(count == 1);  // every task exactly once
  return sizes;
}

}  // namespace

TEST_CASE("fixed batches have the size asked for, the last what is left") {
  auto const policy = xjob::batching_policy::fixed(7);
  REQUIRE_FALSE(policy.is_automatic());
  REQUIRE(policy.fixed_size() == 7);
  std::vector<std::size_t> const sizes = deal(policy, 100, 3, [](std::size_t) { return 1us; });
  REQUIRE(sizes.size() == 15);
  for (std::size_t i = 0; i + 1 < sizes.size(); ++i) REQUIRE(sizes[i] == 7);
  REQUIRE(sizes.back() == 2);
  REQUIRE(policy.batch_size(100, 100, 1) == 0);
  REQUIRE(policy.batch_size(200, 100, 1) == 0);
}

TEST_CASE("automatic batches cover any task count exactly once, for any worker count and costs") {
  std::mt19937_64 random(12345);
  for (int trial = 0; trial < 300; ++trial) {
    std::size_t const tasks = std::uniform_int_distribution<std::size_t>(0, 20'000)(random);
    int const workers = std::uniform_int_distribution<int>(1, 16)(random);
    auto const target = std::chrono::nanoseconds(std::uniform_int_distribution<long>(1, 1'000'000)(random));
    long const spread = std::uniform_int_distribution<long>(1, 100'000)(random);
    std::vector<std::chrono::nanoseconds> costs(tasks);
    for (auto& c : costs) c = std::chrono::nanoseconds(std::uniform_int_distribution<long>(0, spread)(random));
    INFO("tasks " << tasks << ", workers " << workers << ", target " << target.count() << " ns");
    (void)deal(xjob::batching_policy::automatic(target, workers), tasks, workers,
               [&](std::size_t i) { return costs[i]; });
  }
}

TEST_CASE("a learned size settles where a batch lasts about the target") {
  auto const policy = xjob::batching_policy::automatic(200us, 1);
  for (std::chrono::nanoseconds const cost : {10ns, 1000ns, 150'000ns, 10'000'000ns}) {
    INFO("per task " << cost.count() << " ns");
    std::size_t learned = 1;
    for (int batch = 0; batch < 40; ++batch) learned = policy.learn(learned, learned, learned, cost * learned);
    // The ideal size, at least 1; within a factor of 2 of it.
    double const ideal = std::max(1.0, 200'000.0 / static_cast<double>(cost.count()));
    REQUIRE(static_cast<double>(learned) >= ideal / 2);
    REQUIRE(static_cast<double>(learned) <= ideal * 2);
  }
}

TEST_CASE("a slower batch never teaches a larger size, and a partial batch teaches nothing") {
  auto const policy = xjob::batching_policy::automatic(200us, 2);
  std::mt19937_64 random(7);
  for (int trial = 0; trial < 1000; ++trial) {
    std::size_t const learned = std::uniform_int_distribution<std::size_t>(1, 1'000'000)(random);
    std::size_t const batch = std::uniform_int_distribution<std::size_t>(1, 1'000'000)(random);
    auto const fast = std::chrono::nanoseconds(std::uniform_int_distribution<long>(0, 10'000'000)(random));
    auto const slow = fast + std::chrono::nanoseconds(std::uniform_int_distribution<long>(0, 10'000'000)(random));
    REQUIRE(policy.learn(learned, batch, batch, slow) <= policy.learn(learned, batch, batch, fast));
    REQUIRE(policy.learn(learned, batch, batch - 1, fast) == learned);
  }
  // No division by zero: an instant batch counts as 1 ns, and doubles.
  REQUIRE(policy.learn(5, 5, 5, 0ns) == 10);
}

TEST_CASE("the guided cap: no automatic batch takes more than half a fair share of what is left") {
  auto const policy = xjob::batching_policy::automatic(200us, 4);
  REQUIRE(policy.batch_size(0, 1000, 1'000'000) == 125);  // 1000 / (2 * 4)
  REQUIRE(policy.batch_size(992, 1000, 1'000'000) == 1);  // near the end: 1 at a time
  REQUIRE(policy.batch_size(0, 1000, 3) == 3);            // the learned size when smaller
  // Workers with large learned sizes still finish together: the last batches are small.
  std::vector<std::size_t> const sizes = deal(policy, 10'000, 4, [](std::size_t) { return 1ns; });
  for (std::size_t i = sizes.size() - 8; i < sizes.size(); ++i) REQUIRE(sizes[i] == 1);
}

TEST_CASE("bad policies are errors naming the value") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::batching_policy::fixed(0), xjob::invalid_argument, "got 0");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::batching_policy::automatic(0ns, 2), xjob::invalid_argument, "got 0 ns");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::batching_policy::automatic(-5ns, 2), xjob::invalid_argument, "got -5 ns");
  XJOB_REQUIRE_THROWS_WITH_TEXT(xjob::batching_policy::automatic(1us, 0), xjob::invalid_argument, "got 0");
}
