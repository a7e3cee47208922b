// SEEDS.md example 5, a multiprocessing guide, in xjob:
//   1. Pool(2).map(f, [1, 2, 3, 4, 5]) where f sleeps 1 s takes about 3 s:
//      five tasks on two workers are three rounds. Each result says which
//      worker (pid, xjob::worker_index()) ran it.
//   2. The start methods side by side: the time to start a pool of 2 with
//      fork, forkserver and spawn and run one tiny task on it.
//   3. Daemons: a parent process starts a worker that sleeps for long; the
//      parent is killed with SIGKILL, and the worker dies with it.
//   bazel run //examples:seed5_pool_sleep [-- --sleep 0.1]
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>

#include <xjob/init.hpp>
#include <xjob/process.hpp>
#include <xjob/process_pool.hpp>
#include <xjob/start_method.hpp>
#include <xjob/worker.hpp>
#include <xjob/xjob.hpp>

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point start) {
  return std::chrono::duration<double>(clock_type::now() - start).count();
}

// How long f sleeps, set in each pool worker by the pool's initializer
// (Pool(initializer=..., initargs=...)).
double sleep_seconds = 1.0;
void set_sleep(double seconds) { sleep_seconds = seconds; }

// What f returns: x squared and who computed it. Trivially copyable.
struct f_result {
  int x = 0;
  int square = 0;
  int pid = 0;
  int worker = -1;  // xjob::worker_index(), -1 if unset
};

f_result f(int x) {
  std::this_thread::sleep_for(std::chrono::duration<double>(sleep_seconds));
  return {x, x * x, static_cast<int>(getpid()), xjob::worker_index().value_or(-1)};
}

int tiny(int x) { return x + 1; }

// Whether `pid` is gone: no /proc entry, or a zombie waiting to be reaped
// (dead all the same; whoever adopted it may not reap it at once).
bool process_gone(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return true;
  std::string line;
  std::getline(stat, line);
  auto const paren = line.rfind(')');
  if (paren == std::string::npos || paren + 2 >= line.size()) return true;
  char const state = line[paren + 2];
  return state == 'Z' || state == 'X';
}

void pool_sleep(double sleep) {
  std::printf("1. process_pool(2).map(f, [1, 2, 3, 4, 5], chunksize 1), f sleeping %.3f s:\n", sleep);
  xjob::process_pool pool({.processes = 2, .initializer = xjob::delayed(set_sleep)(sleep)});
  std::vector<int> const inputs = {1, 2, 3, 4, 5};
  auto const start = clock_type::now();
  std::vector<f_result> const results = pool.map(f, inputs, 1);
  double const elapsed = seconds_since(start);
  for (auto const& r : results)
    std::printf("  f(%d) = %d in pid %d, worker index %d\n", r.x, r.square, r.pid, r.worker);
  std::printf("  results:");
  for (auto const& r : results) std::printf(" %d", r.square);
  std::printf("\n  main process: pid %d, worker index %s\n", static_cast<int>(getpid()),
              xjob::worker_index() ? std::to_string(*xjob::worker_index()).c_str() : "none");
  std::printf("  time: %.3f s = %.2f x the sleep (5 tasks on 2 workers: 3 rounds)\n\n", elapsed, elapsed / sleep);
}

void start_methods() {
  std::printf("2. start a pool of 2 and run one tiny task:\n");
  std::printf("  %-12s %10s  %s\n", "start method", "seconds", "tiny(41)");
  for (auto const method :
       {xjob::start_method::fork, xjob::start_method::forkserver, xjob::start_method::spawn}) {
    auto const start = clock_type::now();
    xjob::process_pool pool({.processes = 2, .start_method = method});
    int const value = pool.submit(tiny, 41).get();
    double const elapsed = seconds_since(start);
    std::printf("  %-12s %10.4f  %d\n", std::string(xjob::to_string(method)).c_str(), elapsed, value);
  }
  std::printf("\n");
}

void daemon_demo() {
  std::printf("3. daemons: a parent process starts a worker that sleeps 60 s; the parent gets SIGKILL\n");
  // The parent writes its worker's pid here, for the main process to watch.
  xjob::shared_array<std::int64_t> worker_pid({std::size_t(1)});
  xjob::process parent([&worker_pid] {
    xjob::process worker([] { std::this_thread::sleep_for(std::chrono::seconds(60)); });
    worker.start();
    std::atomic_ref<std::int64_t>(*worker_pid.data()).store(worker.pid());
    worker.join();
  });
  parent.start();
  std::atomic_ref<std::int64_t> published(*worker_pid.data());
  auto const deadline = clock_type::now() + std::chrono::seconds(10);
  while (published.load() == 0 && clock_type::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  auto const worker = static_cast<pid_t>(published.load());
  if (worker == 0) {
    std::printf("  the parent did not start its worker within 10 s\n");
    std::printf("daemon worker died with its parent: no\n");
    return;
  }
  std::printf("  parent pid %d, worker pid %d, worker alive: %s\n", static_cast<int>(parent.pid()),
              static_cast<int>(worker), process_gone(worker) ? "no" : "yes");
  parent.kill();
  parent.join();
  std::printf("  parent killed: exit code %d\n", parent.exit_code().value_or(0));
  auto const killed = clock_type::now();
  while (!process_gone(worker) && seconds_since(killed) < 10.0)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  bool const gone = process_gone(worker);
  if (gone) {
    std::printf("  worker %d gone %.3f ms after its parent was killed\n", static_cast<int>(worker),
                seconds_since(killed) * 1e3);
  } else {
    ::kill(worker, SIGKILL);  // our own worker, still running after 10 s: clean up
  }
  std::printf("daemon worker died with its parent: %s\n", gone ? "yes" : "no");
}

}  // namespace

int main(int argc, char** argv) {
  xjob::init(argc, argv);  // first: forkserver and spawn need it

  double sleep = 1.0;
  CLI::App app("SEEDS.md example 5: a pool of 2 mapping a sleeping f over 5 inputs, the start methods side by "
               "side, and a daemon worker dying with its parent.");
  app.add_option("--sleep", sleep, "seconds f sleeps (the article's 1 s by default)")
      ->check(CLI::Range(0.001, 60.0));
  CLI11_PARSE(app, argc, argv);

  try {
    pool_sleep(sleep);
    start_methods();
    daemon_demo();
  } catch (std::exception const& e) {
    std::fprintf(stderr, "seed5: %s\n", e.what());
    return 1;
  }
}
