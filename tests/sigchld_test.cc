// A program's SIGCHLD disposition neither breaks xjob's worker processes nor
// hides how they ended: with SIGCHLD ignored (SIG_IGN, SA_NOCLDWAIT) or
// reaped by a handler of the program's (`while (waitpid(-1, nullptr,
// WNOHANG) > 0);`, as servers do), the processes backend (warm and forked
// per call), process_pool and xjob::process, with every start method, still
// run, name a crash by its signal or exit status, and leave no zombie. Its
// own main() calls xjob::init(), for forkserver and spawn; with
// --thread-before-init (the second Bazel target) a thread is running when
// it does, so the fork server cannot be cloned without an exit signal.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <ranges>
#include <string_view>
#include <thread>
#include <string>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include "process_support.hpp"
#include "test_support.hpp"
#include <xjob/xjob.hpp>

namespace {

using xjob::testing::process_resources;
using xjob::testing::require_nothing_left;

std::atomic<int> reaped_by_handler{0};

void reaping_handler(int) {
  int const saved = errno;
  while (waitpid(-1, nullptr, WNOHANG) > 0) reaped_by_handler.fetch_add(1, std::memory_order_relaxed);
  errno = saved;
}

// The program's SIGCHLD disposition for a scope.
class sigchld_disposition {
 public:
  explicit sigchld_disposition(std::string const& kind) {
    struct sigaction action {};
    sigemptyset(&action.sa_mask);
    if (kind == "SIG_IGN") {
      action.sa_handler = SIG_IGN;
    } else if (kind == "SA_NOCLDWAIT") {
      action.sa_handler = SIG_DFL;
      action.sa_flags = SA_NOCLDWAIT;
    } else {
      action.sa_handler = reaping_handler;
      action.sa_flags = SA_RESTART;
    }
    REQUIRE(sigaction(SIGCHLD, &action, &saved_) == 0);
  }
  ~sigchld_disposition() { sigaction(SIGCHLD, &saved_, nullptr); }
  sigchld_disposition(sigchld_disposition const&) = delete;
  sigchld_disposition& operator=(sigchld_disposition const&) = delete;

 private:
  struct sigaction saved_ {};
};

std::vector<std::string> dispositions() { return {"SIG_IGN", "SA_NOCLDWAIT", "reaping handler"}; }

std::vector<xjob::start_method> methods() {
  return {xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn};
}

int twice_or_crash(int i) {
  if (i == 5) xjob::testing::crash("SIGSEGV");
  if (i == 6) xjob::testing::crash("_exit(3)");
  return 2 * i;
}

int crash_on(int how) {
  if (how == 0) xjob::testing::crash("SIGSEGV");
  if (how == 1) xjob::testing::crash("_exit(3)");
  return how;
}

void exit_seven() { _exit(7); }
void kill_myself() { raise(SIGKILL); }

// Runs `call`, which must end in worker_crashed; returns it.
template <class Call>
xjob::worker_crashed crash_of(Call&& call) {
  try {
    call();
  } catch (xjob::worker_crashed const& e) {
    UNSCOPED_INFO(e.what());
    return e;
  }
  FAIL("no worker_crashed");
  throw;
}

}  // namespace

TEST_CASE("the processes backend runs and names crashes whatever the program does with SIGCHLD") {
  auto const disposition = GENERATE(from_range(dispositions()));
  auto const method = GENERATE(from_range(methods()));
  CAPTURE(disposition, xjob::to_string(method));
  process_resources const before;
  {
    sigchld_disposition const set(disposition);
    xjob::parallel par({.n_jobs = 2, .backend = "processes", .start_method = method});
    auto const items = std::views::iota(0, 5);
    // Captureless: warm workers.
    REQUIRE(par.map(twice_or_crash, items) == std::vector<int>{0, 2, 4, 6, 8});
    auto const segfault = crash_of([&] { (void)par.map(twice_or_crash, std::vector<int>{1, 5}); });
    REQUIRE(segfault.task_index() == std::optional<std::size_t>(1));
    REQUIRE(segfault.signal() == SIGSEGV);
    auto const exited = crash_of([&] { (void)par.map(twice_or_crash, std::vector<int>{6, 1}); });
    REQUIRE(exited.task_index() == std::optional<std::size_t>(0));
    REQUIRE(exited.signal() == 0);
    REQUIRE(exited.exit_status() == 3);
    if (method == xjob::start_method::fork) {
      // With captures: workers forked for the call.
      int const offset = 1;
      auto with_offset = [offset](int i) { return twice_or_crash(i) + offset; };
      REQUIRE(par.map(with_offset, items) == std::vector<int>{1, 3, 5, 7, 9});
      auto const forked = crash_of([&] { (void)par.map(with_offset, std::vector<int>{0, 5}); });
      REQUIRE(forked.task_index() == std::optional<std::size_t>(1));
      REQUIRE(forked.signal() == SIGSEGV);
    }
  }
  require_nothing_left(before);
}

TEST_CASE("process_pool names a crash right whatever the program does with SIGCHLD") {
  auto const disposition = GENERATE(from_range(dispositions()));
  auto const method = GENERATE(from_range(methods()));
  CAPTURE(disposition, xjob::to_string(method));
  process_resources const before;
  {
    sigchld_disposition const set(disposition);
    xjob::process_pool pool({.processes = 2, .start_method = method});
    REQUIRE(pool.submit(crash_on, 9).get() == 9);
    auto const segfault = crash_of([&] { (void)pool.submit(crash_on, 0).get(); });
    REQUIRE(segfault.signal() == SIGSEGV);
    auto const exited = crash_of([&] { (void)pool.submit(crash_on, 1).get(); });
    REQUIRE(exited.signal() == 0);
    REQUIRE(exited.exit_status() == 3);
    REQUIRE(pool.map(crash_on, std::vector<int>{4, 5}) == std::vector<int>{4, 5});
  }
  require_nothing_left(before);
}

TEST_CASE("xjob::process knows its child's exit code whatever the program does with SIGCHLD") {
  auto const disposition = GENERATE(from_range(dispositions()));
  auto const method = GENERATE(from_range(methods()));
  CAPTURE(disposition, xjob::to_string(method));
  process_resources const before;
  {
    sigchld_disposition const set(disposition);
    xjob::process exits(method, exit_seven);
    exits.start();
    exits.join();
    REQUIRE(exits.exit_code() == std::optional<int>(7));
    xjob::process killed(method, kill_myself);
    killed.start();
    killed.join();
    REQUIRE(killed.exit_code() == std::optional<int>(-SIGKILL));
  }
  require_nothing_left(before);
}

TEST_CASE("a reaping handler still reaps the program's own children") {
  process_resources const before;
  sigchld_disposition const set("reaping handler");
  int const reaped = reaped_by_handler.load();
  pid_t const own = fork();
  if (own == 0) _exit(0);
  REQUIRE(own > 0);
  xjob::parallel par({.n_jobs = 2, .backend = "processes"});
  REQUIRE(par.map(twice_or_crash, std::vector<int>{1, 2}) == std::vector<int>{2, 4});
  for (int i = 0; i < 5000 && reaped_by_handler.load() == reaped; ++i) usleep(1000);
  REQUIRE(reaped_by_handler.load() > reaped);
  require_nothing_left(before);
}

int main(int argc, char** argv) {
  // A thread that runs until the tests end, started before init when asked.
  std::mutex mutex;
  std::condition_variable done;
  bool finished = false;
  std::thread early;
  if (argc > 1 && std::string_view(argv[1]) == "--thread-before-init") {
    early = std::thread([&] {
      std::unique_lock lock(mutex);
      done.wait(lock, [&] { return finished; });
    });
    argv[1] = argv[0];
    --argc;
    ++argv;
  }
  xjob::init(argc, argv);  // for the forkserver and spawn start methods
  int const failed = Catch::Session().run(argc, argv);
  if (early.joinable()) {
    {
      std::lock_guard lock(mutex);
      finished = true;
    }
    done.notify_all();
    early.join();
  }
  return failed;
}
