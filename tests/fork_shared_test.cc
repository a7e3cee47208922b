// Fork-shared slots: what one process writes the other sees, and a child
// never hands out a slot its parent also thinks free.
#include <xjob/detail/fork_shared.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include <catch2/catch.hpp>

namespace {
struct counter {
  std::atomic<std::uint64_t> value{0};
};
}  // namespace

TEST_CASE("a forked child's writes to a fork-shared object are seen by the parent") {
  xjob::detail::fork_shared<counter> shared;
  REQUIRE(shared->value.load() == 0);
  pid_t const child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    shared->value.fetch_add(41);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  shared->value.fetch_add(1);
  REQUIRE(shared->value.load() == 42);
}

TEST_CASE("a child's new slots are its own, not ones its parent will hand out") {
  // Warm the pool, so that free slots exist before the fork.
  { xjob::detail::fork_shared<counter> warm; }
  pid_t const child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    xjob::detail::fork_shared<counter> mine;
    mine->value.store(0xbad);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  xjob::detail::fork_shared<counter> parents;
  REQUIRE(parents->value.load() == 0);
}

TEST_CASE("slots come back zeroed after reuse") {
  void* first = nullptr;
  {
    xjob::detail::fork_shared<counter> used;
    used->value.store(7);
    first = &*used;
  }
  xjob::detail::fork_shared<counter> again;
  REQUIRE(&*again == first);
  REQUIRE(again->value.load() == 0);
}
