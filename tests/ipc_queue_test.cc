// xjob::ipc::queue<T>: every message exactly once across processes, blocking
// when full and empty, timeouts, values of every transferable kind, the byte
// budget, close(), and consistency after producers and consumers are killed.
#include <xjob/ipc/queue.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "process_support.hpp"

#include "test_support.hpp"
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/ipc/lock.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/transfer.hpp>

namespace {

using xjob::testing::child_process;
using xjob::testing::shared_flag;

using xjob::ipc::queue;
using namespace std::chrono_literals;

struct reading {
  std::string sensor;
  std::vector<double> values;
  int id = 0;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(sensor, values, id);
  }
  bool operator==(reading const&) const = default;
};

struct point {
  double x;
  double y;
  bool operator==(point const&) const = default;
};

// A message whose bytes say which it is: `n` repeated (n % 50) + 1 times.
std::string pattern(int n) { return std::string(static_cast<std::size_t>(n % 50 + 1), static_cast<char>('a' + n % 26)) + std::to_string(n); }

}  // namespace

static_assert(xjob::transferable<queue<int>>, "a queue travels as its name");
static_assert(xjob::transferable<queue<std::string>>);
static_assert(xjob::transferable<queue<reading>>);
static_assert(!std::is_copy_constructible_v<queue<int>> && std::is_nothrow_move_constructible_v<queue<int>>);

TEST_CASE("a queue is first in, first out") {
  queue<int> q(8);
  REQUIRE(q.empty());
  REQUIRE(q.max_messages() == 8);
  REQUIRE(q.max_bytes() == xjob::ipc::default_queue_bytes);
  for (int i = 0; i < 5; ++i) q.push(i);
  REQUIRE(q.size() == 5);
  for (int i = 0; i < 5; ++i) REQUIRE(q.pop() == i);
  REQUIRE(q.try_pop() == std::nullopt);
}

TEST_CASE("two producer processes and a consumer: every message exactly once, in each producer's order") {
  constexpr int per_producer = 3000;
  queue<int> q(16, 256);  // small: producers block while it is full
  auto produce = [&](int producer) {
    return [&q, producer] {
      for (int i = 0; i < per_producer; ++i) q.push(producer * per_producer + i);
      return 0;
    };
  };
  child_process a(produce(0));
  child_process b(produce(1));
  std::vector<int> seen(2 * per_producer, 0);
  int last[2] = {-1, -1};
  for (int n = 0; n < 2 * per_producer; ++n) {
    std::optional<int> const value = q.pop_for(3s);
    REQUIRE(value.has_value());
    REQUIRE(*value >= 0);
    REQUIRE(*value < 2 * per_producer);
    ++seen[static_cast<std::size_t>(*value)];
    int const producer = *value / per_producer;
    REQUIRE(*value % per_producer > last[producer]);
    last[producer] = *value % per_producer;
  }
  REQUIRE(a.wait() == 0);
  REQUIRE(b.wait() == 0);
  REQUIRE(std::count(seen.begin(), seen.end(), 1) == 2 * per_producer);
  REQUIRE(q.try_pop() == std::nullopt);
}

TEST_CASE("two consumer processes share the messages: each exactly once") {
  constexpr int total = 4000;
  queue<int> q(32);
  xjob::ipc::shared_memory tally(total * sizeof(int));
  auto* counts = reinterpret_cast<int*>(tally.data());
  auto consume = [&] {
    for (;;) {
      std::optional<int> value = q.pop_for(3s);
      if (!value) return 1;
      if (*value < 0) return 0;
      std::atomic_ref<int>(counts[*value]).fetch_add(1);
    }
  };
  child_process a(consume);
  child_process b(consume);
  for (int i = 0; i < total; ++i) q.push(i);
  q.push(-1);
  q.push(-1);
  REQUIRE(a.wait() == 0);
  REQUIRE(b.wait() == 0);
  for (int i = 0; i < total; ++i) REQUIRE(counts[i] == 1);
}

TEST_CASE("push blocks while the queue is full, pop while it is empty") {
  queue<int> q(2);
  q.push(1);
  q.push(2);
  REQUIRE_FALSE(q.try_push(3));
  auto const start = std::chrono::steady_clock::now();
  REQUIRE_FALSE(q.push_for(3, 30ms));
  REQUIRE(std::chrono::steady_clock::now() - start >= 30ms);
  {
    child_process child([&] {
      std::this_thread::sleep_for(50ms);
      return q.pop() == 1 ? 0 : 1;
    });
    q.push(3);  // returns once the child made room
    REQUIRE(child.wait() == 0);
  }
  REQUIRE(q.pop() == 2);
  REQUIRE(q.pop() == 3);
  REQUIRE_FALSE(q.pop_for(30ms).has_value());
  child_process child([&] {
    std::this_thread::sleep_for(50ms);
    q.push(4);
    return 0;
  });
  REQUIRE(q.pop() == 4);  // waited for the child
  REQUIRE(child.wait() == 0);
}

TEST_CASE("the byte budget bounds the queue, and a larger message is an invalid_argument naming both sizes") {
  queue<std::string> q(100, 64);
  std::string const forty(40, 'x');  // 48 bytes encoded: cereal's 8-byte length, then the characters
  REQUIRE(q.try_push(forty));
  REQUIRE_FALSE(q.try_push(forty));  // 96 > 64 bytes
  REQUIRE(q.try_push("short"));     // 13 bytes fit
  XJOB_REQUIRE_THROWS_WITH_TEXT(q.push(std::string(100, 'y')), xjob::invalid_argument, "108 bytes");
  XJOB_REQUIRE_THROWS_WITH_TEXT(q.push(std::string(100, 'y')), xjob::invalid_argument, "64 bytes");
  REQUIRE(q.pop() == forty);
  REQUIRE(q.pop() == "short");
}

TEST_CASE("queues carry strings, vectors, cereal structs and plain structs across processes") {
  queue<std::string> strings(4);
  queue<std::vector<double>> vectors(4);
  queue<reading> readings(4);
  queue<point> points(4);
  reading const r{"thermo", {1.5, -2.25, 1e300}, 7};
  child_process child([&] {
    strings.push("hello from the child");
    strings.push("");
    vectors.push({1.0, 2.0, 3.0});
    vectors.push({});
    readings.push(r);
    points.push({0.5, -0.5});
    return 0;
  });
  REQUIRE(strings.pop_for(3s) == "hello from the child");
  REQUIRE(strings.pop_for(3s) == "");
  REQUIRE(vectors.pop_for(3s) == std::vector<double>{1.0, 2.0, 3.0});
  REQUIRE(vectors.pop_for(3s) == std::vector<double>{});
  REQUIRE(readings.pop_for(3s) == r);
  REQUIRE(points.pop_for(3s) == point{0.5, -0.5});
  REQUIRE(child.wait() == 0);
}

TEST_CASE("messages of every length wrap around a small ring intact") {
  queue<std::string> q(7, 200);
  int pushed = 0;
  int popped = 0;
  for (int round = 0; round < 300; ++round) {
    while (q.try_push(pattern(pushed))) ++pushed;
    int const take = round % 3 + 1;
    for (int i = 0; i < take; ++i) {
      std::optional<std::string> got = q.try_pop();
      if (!got) break;
      REQUIRE(*got == pattern(popped));
      ++popped;
    }
  }
  while (std::optional<std::string> got = q.try_pop()) REQUIRE(*got == pattern(popped++));
  REQUIRE(popped == pushed);
  REQUIRE(pushed > 500);
}

TEST_CASE("close: pushes fail, pops drain what is left, then report the end") {
  queue<int> q(4);
  child_process waiting([&] {
    try {
      (void)q.pop();  // woken by close(); the queue was empty
      return 1;
    } catch (xjob::ipc::closed_error const&) {
      return 0;
    }
  });
  std::this_thread::sleep_for(30ms);
  q.close();
  REQUIRE(waiting.wait() == 0);
  REQUIRE(q.closed());
  REQUIRE_THROWS_AS(q.push(1), xjob::ipc::closed_error);

  queue<int> r(4);
  r.push(1);
  r.push(2);
  r.close();
  REQUIRE_THROWS_AS(r.try_push(3), xjob::ipc::closed_error);
  REQUIRE(r.pop() == 1);
  REQUIRE(r.try_pop() == 2);
  REQUIRE(r.try_pop() == std::nullopt);
  REQUIRE(r.pop_for(10ms) == std::nullopt);
  REQUIRE_THROWS_AS(r.pop(), xjob::ipc::closed_error);
  REQUIRE_THROWS_AS(r.pop(), xjob::error);
}

TEST_CASE("a consumer killed while it waits does not swallow the next message") {
  queue<int> q(4);
  shared_flag started;
  child_process doomed([&] {
    started.set(1);
    return q.pop() == 0 ? 0 : 1;
  });
  REQUIRE(started.wait_for(1));
  std::this_thread::sleep_for(30ms);  // asleep in pop()
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == 128 + SIGKILL);
  child_process survivor([&] { return q.pop_for(3s) == 42 ? 0 : 1; });
  std::this_thread::sleep_for(20ms);
  q.push(42);
  REQUIRE(survivor.wait() == 0);
  REQUIRE(q.empty());
}

TEST_CASE("producers and consumers killed at random moments leave the queue consistent") {
  queue<std::string> q(64, 4096);
  int killed = 0;
  for (int round = 0; round < 6; ++round) {
    {
      child_process producer([&] {
        for (int n = 0;; ++n) q.push(pattern(n));
        return 0;
      });
      child_process consumer([&] {
        for (;;) (void)q.pop();
        return 0;
      });
      std::this_thread::sleep_for(std::chrono::milliseconds(5 + 7 * round));
      producer.kill(SIGKILL);
      consumer.kill(SIGKILL);
      killed += producer.wait() == 128 + SIGKILL;
      killed += consumer.wait() == 128 + SIGKILL;
    }
    // Every message left is whole, and in order: some pattern(n), pattern(n+1), ...
    std::optional<int> previous;
    while (std::optional<std::string> got = q.try_pop()) {
      std::size_t const digits = got->find_first_of("0123456789");
      REQUIRE(digits != std::string::npos);
      int const n = std::stoi(got->substr(digits));
      REQUIRE(*got == pattern(n));
      if (previous) REQUIRE(n == *previous + 1);
      previous = n;
    }
    q.push("still works");
    REQUIRE(q.pop_for(1s) == "still works");
  }
  REQUIRE(killed == 12);
}

TEST_CASE("a queue attached by name, or through cereal, is the same queue") {
  queue<int> q(4);
  std::string const name = q.name();
  child_process child([&] {
    queue<int> mine = queue<int>::attach(name);  // as a process not forked from the creator would
    mine.push(7);
    return 0;
  });
  REQUIRE(child.wait() == 0);
  REQUIRE(q.pop() == 7);
  queue<int> arrived = xjob::detail::decode_value<queue<int>>(xjob::detail::encode_value(q), "a queue");
  arrived.push(8);
  REQUIRE(q.pop() == 8);
  REQUIRE(arrived.max_messages() == 4);
}

TEST_CASE("wrong names, wrong types and empty queues are errors") {
  queue<int> q(4);
  XJOB_REQUIRE_THROWS_WITH_TEXT(queue<double>::attach(q.name()), xjob::invalid_argument, "holds values of type int, not double");
  xjob::ipc::mutex m;
  XJOB_REQUIRE_THROWS_WITH_TEXT(queue<int>::attach(m.name()), xjob::invalid_argument, "names an xjob::ipc::mutex");
  XJOB_REQUIRE_THROWS_WITH_TEXT(queue<int>::attach("junk"), xjob::invalid_argument, "junk");
  XJOB_REQUIRE_THROWS_WITH_TEXT(queue<int>(0), xjob::invalid_argument, "max_messages");
  XJOB_REQUIRE_THROWS_WITH_TEXT(queue<int>(1, 0), xjob::invalid_argument, "max_bytes");
  queue<int> empty;
  REQUIRE_FALSE(empty.valid());
  REQUIRE_THROWS_AS(empty.push(1), xjob::error);
  REQUIRE_THROWS_AS(empty.try_pop(), xjob::error);
  REQUIRE_THROWS_AS(empty.name(), xjob::error);
}
