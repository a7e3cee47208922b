// Fork-shared slots: what one process writes the other sees, and a child
// never hands out a slot its parent also thinks free. And the bulk mapping
// of shared memory that forked workers write.
#include <xjob/detail/fork_shared.hpp>

#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>

#include <catch2/catch.hpp>

#include <xjob/shared_array.hpp>

namespace {
struct counter {
  std::atomic<std::uint64_t> value{0};
};

long minor_faults() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}
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

TEST_CASE("map_for_writing lets a forked child write shared memory with a fraction of the page faults") {
#if defined(__SANITIZE_THREAD__)
  // TSan's shadow memory (4 bytes per byte written) faults as well, and
  // drowns the count this test compares.
  SUCCEED("skipped under ThreadSanitizer");
  return;
#endif
  constexpr std::size_t bytes = std::size_t(64) << 20;
  xjob::shared_array<std::uint8_t> memory({2 * bytes});
  std::memset(memory.data(), 1, 2 * bytes);  // in the page cache, mapped here but not in a child
  xjob::shared_array<long> faults({2});
  pid_t const child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    long const start = minor_faults();
    std::memset(memory.data(), 2, bytes);
    long const plain = minor_faults() - start;
    xjob::detail::map_for_writing(memory.data() + bytes, bytes);
    std::memset(memory.data() + bytes, 2, bytes);
    faults.data()[0] = plain;
    faults.data()[1] = minor_faults() - start - plain;
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  CAPTURE(faults.data()[0], faults.data()[1]);
  REQUIRE(faults.data()[0] >= static_cast<long>(bytes / 4096) * 9 / 10);  // one fault per page written
  REQUIRE(faults.data()[1] * 4 < faults.data()[0]);                       // fault-around: 16 pages a fault
}

TEST_CASE("map_for_writing reads the pages of a kept mapping once, and a fork forgets them") {
#if defined(__SANITIZE_THREAD__)
  SUCCEED("skipped under ThreadSanitizer (its shadow memory faults as well)");
  return;
#endif
  constexpr std::size_t bytes = std::size_t(8) << 20;
  xjob::shared_array<std::uint8_t> memory({bytes});
  std::memset(memory.data(), 1, bytes);
  // Minor faults of: the first mapping, the second (pages recorded), after
  // forget_kept_mapping, and in a process forked after the first.
  xjob::shared_array<long> faults({4});
  pid_t const child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The mapping's page tables are dropped between the looks (the pages
    // stay in the memfd), so a page read again faults again.
    auto faults_of_mapping = [&] {
      long const start = minor_faults();
      xjob::detail::map_for_writing(memory.data() + 100, bytes - 200);
      long const counted = minor_faults() - start;
      madvise(memory.data(), bytes, MADV_DONTNEED);
      return counted;
    };
    xjob::detail::remember_kept_mapping(memory.data(), bytes);
    faults.data()[0] = faults_of_mapping();
    faults.data()[1] = faults_of_mapping();
    pid_t const grandchild = fork();
    if (grandchild == 0) {
      faults.data()[3] = faults_of_mapping();
      _exit(0);
    }
    waitpid(grandchild, nullptr, 0);
    xjob::detail::forget_kept_mapping(memory.data());
    faults.data()[2] = faults_of_mapping();
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  CAPTURE(faults.data()[0], faults.data()[1], faults.data()[2], faults.data()[3]);
  long const pages = static_cast<long>(bytes / 4096);
  REQUIRE(faults.data()[0] >= pages / 16);  // fault-around: 16 pages a fault
  REQUIRE(faults.data()[1] == 0);
  REQUIRE(faults.data()[2] >= pages / 16);
  REQUIRE(faults.data()[3] >= pages / 16);
}

TEST_CASE("prepare_output_for_writing gives a cold output its pages in one call and never changes memory") {
#if defined(__SANITIZE_THREAD__)
  SUCCEED("skipped under ThreadSanitizer (its shadow memory faults as well)");
  return;
#endif
  constexpr std::size_t bytes = std::size_t(16) << 20;
  long const pages = static_cast<long>(bytes / 4096);
  // New memfds, not recycled memory with pages already there.
  xjob::trim_shared_memory_cache();
  xjob::shared_array<std::uint8_t> cold({bytes}, xjob::uninitialized);
  xjob::shared_array<std::uint8_t> plain({bytes}, xjob::uninitialized);
  REQUIRE_FALSE(xjob::detail::page_has_memory(cold.data()));
  REQUIRE_FALSE(xjob::detail::page_has_memory(cold.data() + bytes / 2));

  // Unaligned ends, as chunk boundaries are: the pages holding them are
  // made whole.
  xjob::detail::prepare_output_for_writing(cold.data() + 100, bytes - 200);
  REQUIRE(xjob::detail::page_has_memory(cold.data()));
  REQUIRE(xjob::detail::page_has_memory(cold.data() + bytes / 2));
  REQUIRE(xjob::detail::page_has_memory(cold.data() + bytes - 1));
  long start = minor_faults();
  std::memset(cold.data(), 3, bytes);
  long const after_prepare = minor_faults() - start;
  start = minor_faults();
  std::memset(plain.data(), 3, bytes);
  long const without = minor_faults() - start;
  CAPTURE(after_prepare, without, pages);
  REQUIRE(without >= pages * 9 / 10);  // one fault per page written
  REQUIRE(after_prepare * 100 < pages);

  // Memory with pages keeps its contents, whole or at a chunk's edge.
  xjob::detail::prepare_output_for_writing(cold.data() + 4000, 10000);
  xjob::detail::prepare_output_for_writing(plain.data(), bytes);
  REQUIRE(std::all_of(cold.begin(), cold.end(), [](std::uint8_t v) { return v == 3; }));
  REQUIRE(std::all_of(plain.begin(), plain.end(), [](std::uint8_t v) { return v == 3; }));
}

TEST_CASE("prepare_output_for_writing maps a forked child's cold output and keeps its neighbours' writes") {
#if defined(__SANITIZE_THREAD__)
  SUCCEED("skipped under ThreadSanitizer (its shadow memory faults as well)");
  return;
#endif
  constexpr std::size_t bytes = std::size_t(8) << 20;
  xjob::trim_shared_memory_cache();
  xjob::shared_array<std::uint8_t> memory({bytes}, xjob::uninitialized);
  xjob::shared_array<long> faults({1});
  // The parent writes the first half's last bytes, in the page the child's
  // chunk starts in; the child readies its chunk and writes it.
  std::memset(memory.data() + bytes / 2 - 10, 7, 10);
  pid_t const child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    xjob::detail::prepare_output_for_writing(memory.data() + bytes / 2, bytes / 2);
    long const start = minor_faults();
    std::memset(memory.data() + bytes / 2, 9, bytes / 2);
    faults.data()[0] = minor_faults() - start;
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  CAPTURE(faults.data()[0]);
  REQUIRE(faults.data()[0] * 100 < static_cast<long>(bytes / 2 / 4096));
  REQUIRE(std::all_of(memory.data() + bytes / 2 - 10, memory.data() + bytes / 2, [](std::uint8_t v) { return v == 7; }));
  REQUIRE(std::all_of(memory.data() + bytes / 2, memory.end(), [](std::uint8_t v) { return v == 9; }));
}
