// xjob::ipc::shared_value<T>: load/store under its lock across processes,
// compound updates under get_lock(), lock-free atomic() access, and values
// that cross by name.
#include <xjob/ipc/shared_value.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>

#include <catch2/catch.hpp>

#include "process_support.hpp"

#include "test_support.hpp"
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/transfer.hpp>

namespace {

using xjob::testing::child_process;
using xjob::testing::shared_flag;

using xjob::ipc::shared_value;
using namespace std::chrono_literals;

struct vec3 {
  double x, y, z;
  bool operator==(vec3 const&) const = default;
};

template <class V>
concept has_atomic = requires(V const& v) { v.atomic(); };

}  // namespace

static_assert(xjob::transferable<shared_value<double>>, "a shared_value travels as its name");
static_assert(has_atomic<shared_value<long>>);
static_assert(!has_atomic<shared_value<vec3>>, "24 bytes are not lock-free: no atomic_ref across processes");

TEST_CASE("a shared_value starts value-initialised or as given, and stores and loads") {
  shared_value<double> d;
  REQUIRE(d.load() == 0.0);
  d.store(2.5);
  REQUIRE(d.load() == 2.5);
  shared_value<vec3> v(vec3{1, 2, 3});
  REQUIRE(v.load() == vec3{1, 2, 3});
  REQUIRE(reinterpret_cast<std::uintptr_t>(d.data()) % alignof(double) == 0);
}

TEST_CASE("processes updating a shared_value under get_lock() count exactly") {
  constexpr int per_process = 5000;
  shared_value<long> total;
  auto work = [&] {
    for (int i = 0; i < per_process; ++i) {
      std::scoped_lock hold(total.get_lock());
      long volatile* value = total.data();
      *value = *value + 1;
    }
    return 0;
  };
  child_process a(work);
  child_process b(work);
  REQUIRE(a.wait() == 0);
  REQUIRE(b.wait() == 0);
  REQUIRE(total.load() == 2 * per_process);
}

TEST_CASE("atomic() updates a shared_value lock-free across processes") {
  shared_value<long> hits;
  auto work = [&] {
    for (int i = 0; i < 10000; ++i) hits.atomic().fetch_add(1, std::memory_order_relaxed);
    return 0;
  };
  child_process a(work);
  child_process b(work);
  REQUIRE(a.wait() == 0);
  REQUIRE(b.wait() == 0);
  REQUIRE(hits.atomic().load() == 20000);
}

TEST_CASE("a holder of a shared_value's lock that is killed is reported to the next") {
  shared_value<int> v(1);
  shared_value<int> ready;
  child_process child([&] {
    v.get_lock().lock();
    ready.atomic().store(1);
    pause();
    return 0;
  });
  auto const until = std::chrono::steady_clock::now() + 3s;
  while (ready.atomic().load() == 0 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
  child.kill(SIGKILL);
  REQUIRE(child.wait() == 128 + SIGKILL);
  std::unique_lock hold(v.get_lock(), 3s);
  REQUIRE(hold.owns_lock());
  REQUIRE(v.get_lock().previous_owner_died());
  *v.data() = 2;
  hold.unlock();
  REQUIRE(v.load() == 2);
}

TEST_CASE("a shared_value attached by name, or through cereal, is the same value") {
  shared_value<vec3> v(vec3{1, 1, 1});
  std::string const name = v.name();
  child_process child([&] {
    auto mine = shared_value<vec3>::attach(name);
    mine.store(vec3{4, 5, 6});
    return 0;
  });
  REQUIRE(child.wait() == 0);
  REQUIRE(v.load() == vec3{4, 5, 6});
  auto arrived = xjob::detail::decode_value<shared_value<vec3>>(xjob::detail::encode_value(v), "a value");
  arrived.store(vec3{0, 0, 7});
  REQUIRE(v.load().z == 7);
  XJOB_REQUIRE_THROWS_WITH_TEXT(shared_value<int>::attach(name), xjob::invalid_argument, "not int");
  REQUIRE_THROWS_AS(v.get_lock().name(), xjob::error);  // the lock has no name of its own
}

TEST_CASE("a moved-from shared_value is empty") {
  shared_value<int> v(3);
  shared_value<int> w = std::move(v);
  REQUIRE(w.load() == 3);
  REQUIRE_FALSE(v.valid());  // NOLINT(bugprone-use-after-move): moved-from is specified empty
  REQUIRE_THROWS_AS(v.load(), xjob::error);
  REQUIRE_THROWS_AS(v.get_lock(), xjob::error);
  w.store(4);
  std::scoped_lock hold(w.get_lock());
  REQUIRE(*w.data() == 4);
}
