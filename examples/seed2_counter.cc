// Seed example 2 (SEEDS.md): a shared counter, with threads and processes.
//
// Two workers each add 1 to a counter `--count` times (50,000,000 by
// default, as in the article), five ways:
//   1. two std::threads, no lock: the read-modify-write is a load and a
//      store, as Python's `counter += 1` is, so updates are lost (a race);
//   2. two std::threads, a std::mutex around each add: exact;
//   3. two xjob::processes, each counting locally and pushing its count on
//      an xjob::ipc::queue that the caller sums: exact;
//   4. two xjob::processes adding into one int64 in an
//      xjob::ipc::shared_memory block (attached by name in the children),
//      each add guarded by an xjob::ipc::semaphore(1): exact;
// and a two-way talk with a child through xjob::ipc::make_pipe.
//
//   bazel run //examples:seed2_counter [-- --count 1000000]
//
// Prints one line per variant: the total, whether it is right, the time.
// Exit status 1 if a variant that must be exact is not (the unlocked one
// may be anything).
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include <xjob/errors.hpp>
#include <xjob/ipc/pipe.hpp>
#include <xjob/ipc/queue.hpp>
#include <xjob/ipc/semaphore.hpp>
#include <xjob/ipc/shared_memory.hpp>
#include <xjob/process.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

bool all_exact = true;

// One result line: "<variant>: total <n> (<verdict>), <t> s".
void report(std::string_view variant, std::int64_t total, std::int64_t expected, double seconds,
            std::string_view detail = {}) {
  std::string verdict;
  if (total == expected) {
    verdict = detail.empty() ? "exact" : fmt::format("exact: {}", detail);
  } else {
    verdict = fmt::format("wrong: {} updates lost", expected - total);
    all_exact = false;
  }
  fmt::print("{:<42} total {:>10} ({}), {:.3f} s\n", fmt::format("{}:", variant), total, verdict, seconds);
}

// Counts to n one increment at a time. The empty asm makes the compiler
// believe `local` changes behind its back, so the loop is not folded into
// `local = n`: every increment happens, in a register.
std::int64_t count_locally(std::int64_t n) {
  std::int64_t local = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    local += 1;
    asm volatile("" : "+r"(local));
  }
  return local;
}

// 1. No lock. Python's `counter += 1` reads, adds and writes back in three
// steps that another thread can come between; so does this: a relaxed load,
// then a relaxed store. (std::atomic rather than a plain int: the race is
// the one the article shows, lost updates, and not undefined behaviour; the
// separate load and store keep the compiler from making one add out of it.)
void threads_without_lock(std::int64_t count) {
  std::atomic<std::int64_t> counter{0};
  auto const start = clock_type::now();
  auto add = [&counter, count] {
    for (std::int64_t i = 0; i < count; ++i)
      counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  };
  std::thread a(add);
  std::thread b(add);
  a.join();
  b.join();
  double const seconds = seconds_since(start);
  std::int64_t const total = counter.load();
  std::int64_t const expected = 2 * count;
  // Printed like report(), but a wrong total is the expected outcome here.
  std::string const verdict = total == expected ? std::string("right this time, by luck: the race is still there")
                                                : fmt::format("wrong: {} updates lost to the race", expected - total);
  fmt::print("{:<42} total {:>10} ({}), {:.3f} s\n", "threads, no lock:", total, verdict, seconds);
}

// 2. With std::mutex (threading.Lock) around each add.
void threads_with_mutex(std::int64_t count) {
  std::int64_t counter = 0;
  std::mutex guard;
  auto const start = clock_type::now();
  auto add = [&counter, &guard, count] {
    for (std::int64_t i = 0; i < count; ++i) {
      std::scoped_lock hold(guard);
      ++counter;
    }
  };
  std::thread a(add);
  std::thread b(add);
  a.join();
  b.join();
  report("threads, std::mutex", counter, 2 * count, seconds_since(start));
}

void require_clean_exit(xjob::process const& p, std::string_view what) {
  if (p.exit_code() != 0)
    throw xjob::error(fmt::format("{}: child {} ended with exit code {} {}", what, p.pid(),
                                  p.exit_code().value_or(-999), p.error_message()));
}

// 3. Processes count locally and put their counts on a queue; the caller
// sums what comes off it.
void processes_with_queue(std::int64_t count) {
  auto const start = clock_type::now();
  xjob::ipc::queue<std::int64_t> counts(2);
  auto count_and_put = [&counts, count] { counts.push(count_locally(count)); };
  xjob::process a(count_and_put);
  xjob::process b(count_and_put);
  a.start();
  b.start();
  std::int64_t const first = counts.pop();
  std::int64_t const second = counts.pop();
  a.join();
  b.join();
  require_clean_exit(a, "queue");
  require_clean_exit(b, "queue");
  report("processes, counts summed from ipc::queue", first + second, 2 * count, seconds_since(start),
         fmt::format("{} + {}", first, second));
}

// 4. Processes add into one int64 in shared memory, one add at a time under
// a semaphore(1). The children attach the block by name, as the article's
// SharedMemory(name=...) does (a forked child could also use the caller's
// handle). Then the caller closes its handle; there is nothing to unlink.
void processes_with_shared_memory(std::int64_t count) {
  auto const start = clock_type::now();
  xjob::ipc::shared_memory block(sizeof(std::int64_t));
  xjob::ipc::semaphore guard(1);
  std::string const name = block.name();
  auto add = [&name, &guard, count] {
    xjob::ipc::shared_memory mine = xjob::ipc::shared_memory::attach(name);
    auto* const total = reinterpret_cast<std::int64_t*>(mine.data());
    for (std::int64_t i = 0; i < count; ++i) {
      guard.acquire();
      *total += 1;
      guard.release();
    }
    mine.close();
  };
  xjob::process a(add);
  xjob::process b(add);
  a.start();
  b.start();
  a.join();
  b.join();
  require_clean_exit(a, "shared memory");
  require_clean_exit(b, "shared memory");
  std::int64_t total = 0;
  std::memcpy(&total, block.data(), sizeof total);
  report("processes, shared_memory + semaphore(1)", total, 2 * count, seconds_since(start));

  fmt::print("shared memory \"{}\": {} bytes, closed\n", name, block.size());
  block.close();
  // Python would unlink() the block now. A memfd has no name in any file
  // system: it is gone once its last user closes it, and the name refers
  // to nothing.
  try {
    (void)xjob::ipc::shared_memory::attach(name);
    fmt::print("attach after close: it is still there (unexpected)\n");
    all_exact = false;
  } catch (xjob::invalid_argument const&) {
    fmt::print("attach after close: refused; nothing to unlink (the memfd disappears with its last user)\n");
  }
}

// 5. Pipe: a connected pair of ends; each side sends and receives.
using message = std::pair<std::string, std::int64_t>;

void two_way_pipe(std::int64_t count) {
  auto const start = clock_type::now();
  auto ends = xjob::ipc::make_pipe<message>();
  auto& parent_end = ends.first;
  auto& child_end = ends.second;
  xjob::process child([&child_end] {
    for (;;) {
      message const request = child_end.recv();
      if (request.first == "count") {
        child_end.send({"counted", count_locally(request.second)});
      } else if (request.first == "exit") {
        child_end.send({"bye", 0});
        return;
      } else {
        child_end.send({"unknown request: " + request.first, 0});
      }
    }
  });
  child.start();
  auto exchange = [&parent_end](message const& request) {
    fmt::print("pipe: parent sends (\"{}\", {})\n", request.first, request.second);
    parent_end.send(request);
    message const reply = parent_end.recv();
    fmt::print("pipe: parent receives (\"{}\", {})\n", reply.first, reply.second);
    return reply;
  };
  bool const right = exchange({"count", count}) == message{"counted", count};
  bool const ended = exchange({"exit", 0}) == message{"bye", 0};
  child.join();
  require_clean_exit(child, "pipe");
  if (!right || !ended) all_exact = false;
  fmt::print("{:<42} {}, {:.3f} s\n", "pipe, two-way send/recv with a child:", right && ended ? "ok" : "WRONG",
             seconds_since(start));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Seed example 2: a shared counter, with threads, a mutex, processes, a queue, shared memory, a "
      "semaphore and a pipe");
  std::int64_t count = 50'000'000;
  app.add_option("--count", count, "increments per worker (two workers)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40));
  CLI11_PARSE(app, argc, argv);

  try {
    fmt::print("seed 2: two workers each add 1 to a counter {} times (expected total {})\n", count, 2 * count);
    std::fflush(stdout);
    threads_without_lock(count);
    threads_with_mutex(count);
    std::fflush(stdout);
    processes_with_queue(count);
    processes_with_shared_memory(count);
    two_way_pipe(count);
  } catch (std::exception const& e) {
    std::fflush(stdout);
    fmt::print(stderr, "seed2_counter: {}\n", e.what());
    return 1;
  }
  if (!all_exact) {
    fmt::print(stderr, "seed2_counter: a variant that must be exact was not\n");
    return 1;
  }
  return 0;
}
