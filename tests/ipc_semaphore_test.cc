// xjob::ipc::semaphore: counts across processes, timed acquisition times
// out, and a waiter killed in acquire() leaves nothing behind.
#include <xjob/ipc/semaphore.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <vector>
#include <thread>

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

using xjob::ipc::semaphore;
using namespace std::chrono_literals;

}  // namespace

static_assert(xjob::transferable<semaphore>, "a semaphore travels as its name");

TEST_CASE("a semaphore counts") {
  semaphore s(2);
  REQUIRE(s.value() == 2);
  REQUIRE(s.try_acquire());
  REQUIRE(s.try_acquire());
  REQUIRE_FALSE(s.try_acquire());
  REQUIRE(s.value() == 0);
  s.release(2);
  REQUIRE(s.value() == 2);
  s.acquire();
  REQUIRE(s.value() == 1);
  s.release();
  REQUIRE(s.value() == 2);
}

TEST_CASE("timed acquisition of an empty semaphore times out") {
  semaphore s(0);
  auto const start = std::chrono::steady_clock::now();
  REQUIRE_FALSE(s.try_acquire_for(30ms));
  REQUIRE(std::chrono::steady_clock::now() - start >= 30ms);
  REQUIRE_FALSE(s.try_acquire_until(std::chrono::steady_clock::now() + 5ms));
  REQUIRE_FALSE(s.try_acquire_until(std::chrono::system_clock::now() + 5ms));
  REQUIRE_FALSE(s.try_acquire_for(-1s));
  REQUIRE(s.value() == 0);
  s.release();
  REQUIRE(s.try_acquire_for(0ms));
}

TEST_CASE("a release in one process wakes an acquire in another") {
  semaphore s(0);
  semaphore reply(0);
  child_process child([&] {
    s.acquire();  // blocks until the parent releases
    reply.release();
    return 0;
  });
  std::this_thread::sleep_for(20ms);
  REQUIRE(s.value() == 0);
  s.release();
  REQUIRE(reply.try_acquire_for(3s));
  REQUIRE(child.wait() == 0);
  REQUIRE(s.value() == 0);
}

TEST_CASE("at most `initial` processes hold a semaphore at once") {
  constexpr int slots = 2;
  constexpr int workers = 4;
  semaphore s(slots);
  xjob::ipc::shared_memory counters(2 * sizeof(int));
  auto* ints = reinterpret_cast<int*>(counters.data());
  std::atomic_ref<int> inside(ints[0]);
  std::atomic_ref<int> most(ints[1]);
  auto work = [&] {
    for (int i = 0; i < 50; ++i) {
      s.acquire();
      int const now = inside.fetch_add(1) + 1;
      int seen = most.load();
      while (now > seen && !most.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(100us);
      inside.fetch_sub(1);
      s.release();
    }
    return 0;
  };
  std::vector<std::unique_ptr<child_process>> children;
  for (int w = 0; w < workers; ++w) children.push_back(std::make_unique<child_process>(work));
  for (auto& child : children) REQUIRE(child->wait() == 0);
  REQUIRE(most.load() >= 1);
  REQUIRE(most.load() <= slots);
  REQUIRE(s.value() == slots);
}

TEST_CASE("a waiter killed in acquire leaves the semaphore working") {
  semaphore s(0);
  shared_flag waiting;
  child_process doomed([&] {
    waiting.set(1);
    s.acquire();
    return 0;
  });
  REQUIRE(waiting.wait_for(1));
  std::this_thread::sleep_for(20ms);  // asleep in the futex by now
  doomed.kill(SIGKILL);
  REQUIRE(doomed.wait() == 128 + SIGKILL);
  semaphore reply(0);
  child_process survivor([&] {
    if (!s.try_acquire_for(3s)) return 1;
    reply.release();
    return 0;
  });
  std::this_thread::sleep_for(10ms);
  s.release();
  REQUIRE(survivor.wait() == 0);
  REQUIRE(reply.try_acquire());
  REQUIRE(s.value() == 0);
}

TEST_CASE("bad counts are invalid_arguments") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(semaphore(-1), xjob::invalid_argument, "-1");
  REQUIRE_THROWS_AS(semaphore(semaphore::max() + 1), xjob::invalid_argument);
  semaphore s(semaphore::max() - 1);
  s.release();
  XJOB_REQUIRE_THROWS_WITH_TEXT(s.release(), xjob::invalid_argument, "above");
  REQUIRE(s.value() == semaphore::max());
  XJOB_REQUIRE_THROWS_WITH_TEXT(s.release(-1), xjob::invalid_argument, "negative");
}

TEST_CASE("an empty semaphore's operations are errors") {
  semaphore s;
  REQUIRE_FALSE(s.valid());
  REQUIRE_THROWS_AS(s.acquire(), xjob::error);
  REQUIRE_THROWS_AS(s.release(), xjob::error);
  REQUIRE_THROWS_AS(s.name(), xjob::error);
}

TEST_CASE("a semaphore attached by name, or through cereal, is the same semaphore") {
  semaphore s(0);
  std::string const name = s.name();
  child_process child([&] {
    semaphore mine = semaphore::attach(name);
    mine.release(3);
    return 0;
  });
  REQUIRE(child.wait() == 0);
  REQUIRE(s.value() == 3);
  semaphore arrived = xjob::detail::decode_value<semaphore>(xjob::detail::encode_value(s), "a semaphore");
  REQUIRE(arrived.try_acquire());
  REQUIRE(s.value() == 2);
  xjob::ipc::mutex other;
  XJOB_REQUIRE_THROWS_WITH_TEXT(semaphore::attach(other.name()), xjob::invalid_argument, "names an xjob::ipc::mutex");
}
