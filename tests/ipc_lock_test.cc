// xjob::ipc::mutex (xjob::ipc::lock): mutual exclusion across processes, and
// a holder that dies hands the lock on instead of deadlocking its successor.
#include <xjob/ipc/lock.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <system_error>
#include <thread>
#include <type_traits>

#include <catch2/catch.hpp>

#include "process_support.hpp"

#include "test_support.hpp"
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/ipc/semaphore.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/transfer.hpp>

namespace {

using xjob::testing::child_process;
using xjob::testing::shared_flag;

using xjob::ipc::mutex;
using namespace std::chrono_literals;

}  // namespace

static_assert(std::is_same_v<xjob::ipc::lock, xjob::ipc::mutex>);
static_assert(xjob::transferable<mutex>, "a mutex travels as its name");
static_assert(!std::is_copy_constructible_v<mutex> && std::is_nothrow_move_constructible_v<mutex>);

TEST_CASE("two processes incrementing a counter under the lock count exactly") {
  constexpr int per_process = 20000;
  mutex m;
  xjob::ipc::shared_memory counter(sizeof(long));
  auto* value = reinterpret_cast<long volatile*>(counter.data());
  auto work = [&] {
    for (int i = 0; i < per_process; ++i) {
      std::scoped_lock hold(m);
      long const seen = *value;  // a read-modify-write that races without the lock
      *value = seen + 1;
    }
    return 0;
  };
  child_process a(work);
  child_process b(work);
  work();
  REQUIRE(a.wait() == 0);
  REQUIRE(b.wait() == 0);
  REQUIRE(*value == 3 * per_process);
}

TEST_CASE("a holder killed by SIGKILL hands the lock to the next locker, who is told") {
  mutex m;
  shared_flag locked;
  child_process child([&] {
    m.lock();
    locked.set(1);
    pause();  // killed here, holding the lock
    return 0;
  });
  REQUIRE(locked.wait_for(1));
  REQUIRE_FALSE(m.try_lock());
  REQUIRE_FALSE(m.try_lock_for(20ms));
  child.kill(SIGKILL);
  REQUIRE(child.wait() == 128 + SIGKILL);
  REQUIRE(m.try_lock_for(3s));  // not a deadlock
  REQUIRE(m.previous_owner_died());
  m.unlock();
  std::unique_lock again(m);
  REQUIRE_FALSE(m.previous_owner_died());
}

TEST_CASE("a holder that exits holding the lock hands it on too") {
  mutex m;
  child_process child([&] {
    m.lock();
    return 0;  // _exit(0) holding it
  });
  REQUIRE(child.wait() == 0);
  std::unique_lock hold(m, 3s);
  REQUIRE(hold.owns_lock());
  REQUIRE(m.previous_owner_died());
}

TEST_CASE("a waiting locker gets the lock when the holder is killed") {
  mutex m;
  shared_flag locked;
  child_process holder([&] {
    m.lock();
    locked.set(1);
    pause();
    return 0;
  });
  REQUIRE(locked.wait_for(1));
  child_process waiter([&] {
    if (!m.try_lock_for(3s)) return 1;
    int const died = m.previous_owner_died() ? 0 : 2;
    m.unlock();
    return died;
  });
  std::this_thread::sleep_for(50ms);
  holder.kill(SIGKILL);
  REQUIRE(holder.wait() == 128 + SIGKILL);
  REQUIRE(waiter.wait() == 0);
}

TEST_CASE("a thread that ends holding the lock hands it on") {
  mutex m;
  std::thread([&] { m.lock(); }).join();
  REQUIRE(m.try_lock());
  REQUIRE(m.previous_owner_died());
  m.unlock();
}

TEST_CASE("timed locking times out while another process holds the lock") {
  mutex m;
  shared_flag locked;
  shared_flag release;
  child_process child([&] {
    std::scoped_lock hold(m);
    locked.set(1);
    return release.wait_for(1) ? 0 : 1;
  });
  REQUIRE(locked.wait_for(1));
  REQUIRE_FALSE(m.try_lock());
  REQUIRE_FALSE(m.try_lock_for(30ms));
  REQUIRE_FALSE(m.try_lock_until(std::chrono::steady_clock::now() + 10ms));
  REQUIRE_FALSE(m.try_lock_until(std::chrono::system_clock::now() + 10ms));
  release.set(1);
  REQUIRE(m.try_lock_for(3s));
  REQUIRE_FALSE(m.previous_owner_died());
  m.unlock();
  REQUIRE(child.wait() == 0);
}

TEST_CASE("misuse is an error, not a hang") {
  mutex m;
  m.lock();
  REQUIRE_THROWS_AS(m.lock(), std::system_error);  // EDEADLK
  m.unlock();
#if !defined(__SANITIZE_THREAD__)
  // ThreadSanitizer reports this deliberate misuse itself, before glibc
  // returns EPERM.
  REQUIRE_THROWS_AS(m.unlock(), std::system_error);  // EPERM
#endif
  mutex moved = std::move(m);
  REQUIRE_FALSE(m.valid());  // NOLINT(bugprone-use-after-move): moved-from is specified empty
  REQUIRE_THROWS_AS(m.lock(), xjob::error);
  REQUIRE_THROWS_AS(m.name(), xjob::error);
  std::scoped_lock hold(moved);
}

TEST_CASE("a mutex attached by name is the same mutex") {
  mutex m;
  std::string const name = m.name();
  shared_flag done;
  std::unique_lock hold(m);
  child_process child([&] {
    mutex mine = mutex::attach(name);  // as a process not forked from the creator would
    if (mine.try_lock()) return 1;
    done.set(1);
    if (!mine.try_lock_for(3s)) return 2;
    mine.unlock();
    return 0;
  });
  REQUIRE(done.wait_for(1));
  hold.unlock();
  REQUIRE(child.wait() == 0);

  SECTION("and travels through cereal as its name") {
    std::string const bytes = xjob::detail::encode_value(m);
    mutex arrived = xjob::detail::decode_value<mutex>(bytes, "a mutex");
    std::scoped_lock held(arrived);
    REQUIRE_THROWS_AS(m.lock(), std::system_error);  // EDEADLK: this thread holds it, through the other handle
  }
}

TEST_CASE("attaching a mutex by a wrong name is an invalid_argument") {
  XJOB_REQUIRE_THROWS_WITH_TEXT(mutex::attach("xjob-shm:bad"), xjob::invalid_argument, "xjob-shm:bad");
  xjob::ipc::semaphore other(1);
  XJOB_REQUIRE_THROWS_WITH_TEXT(mutex::attach(other.name()), xjob::invalid_argument, "names an xjob::ipc::semaphore");
  xjob::ipc::shared_memory raw(4096);
  XJOB_REQUIRE_THROWS_WITH_TEXT(mutex::attach(raw.name()), xjob::invalid_argument, "not an xjob::ipc primitive");
}
