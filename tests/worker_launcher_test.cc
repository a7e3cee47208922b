// Starting worker processes by each start method: the worker is our child,
// knows its index, starts with one thread (forkserver, spawn), is a fresh
// program (spawn) or a copy of the program at init (forkserver), inherits
// none of the launcher's variables, and leaks nothing. Also measures what
// each method costs, and prints it.
#include "src/process/worker_launcher.hpp"
#include "src/process/frame_channel.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <xjob/errors.hpp>
#include <xjob/init.hpp>
#include <xjob/worker.hpp>

#include "process_support.hpp"
#include "test_support.hpp"

namespace launcher = xjob::detail::process;
using xjob::start_method;

namespace {

// Set by main before xjob::init: the program's pid there, or a spawned
// worker's own (main ran again in it).
long pid_at_main_start = 0;
// Changed by a test after main started.
int changed_after_main = 1;

std::int64_t monotonic_ns() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return std::int64_t(now.tv_sec) * 1'000'000'000 + now.tv_nsec;
}

int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  return -1;
}

// What a worker sends back.
struct worker_report {
  long parent = 0;
  long pid = 0;
  int index = -2;
  int threads = 0;
  long pid_at_main_start = 0;
  int changed_after_main = 0;
  int launcher_variables = 0;  // XJOB_WORKER_* variables still set
  int channel_inherited = 0;   // the channel is close-on-exec again
};

bool read_exactly(int fd, void* data, std::size_t size) {
  auto* bytes = static_cast<char*>(data);
  while (size > 0) {
    ssize_t const got = read(fd, bytes, size);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return false;
    bytes += got;
    size -= static_cast<std::size_t>(got);
  }
  return true;
}

void write_exactly(int fd, void const* data, std::size_t size) {
  if (write(fd, data, size) != static_cast<ssize_t>(size)) _exit(3);
}

// Reads its index, sets it, reports, waits for the caller to close.
[[noreturn]] void report_entry(int channel) {
  int index = -1;
  if (!read_exactly(channel, &index, sizeof index)) _exit(2);
  xjob::detail::set_worker_index(index);
  worker_report report;
  report.parent = getppid();
  report.pid = getpid();
  report.index = xjob::worker_index().value_or(-1);
  report.threads = thread_count();
  report.pid_at_main_start = pid_at_main_start;
  report.changed_after_main = changed_after_main;
  for (char const* name : {"XJOB_WORKER_ENTRY", "XJOB_WORKER_FD", "XJOB_WORKER_CPU_SHARE", "XJOB_WORKER_OWNER"})
    report.launcher_variables += std::getenv(name) != nullptr ? 1 : 0;
  report.channel_inherited = (fcntl(channel, F_GETFD) & FD_CLOEXEC) != 0 ? 0 : 1;
  write_exactly(channel, &report, sizeof report);
  char byte = 0;
  (void)read_exactly(channel, &byte, 1);
  _exit(0);
}

// Sends the time its entry started, and ends.
[[noreturn]] void clock_entry(int channel) {
  std::int64_t const now = monotonic_ns();
  write_exactly(channel, &now, sizeof now);
  _exit(0);
}

bool const registered =
    launcher::register_worker_entry("test.report", report_entry) &&
    launcher::register_worker_entry("test.clock", clock_entry);

// A launched worker, reaped through its pidfd; returns how it ended.
struct child {
  launcher::launched_worker worker;

  explicit child(launcher::launched_worker launched) : worker(std::move(launched)) {}
  // The exit status, or -signal.
  int wait() {
    auto const end = worker.child.wait(true);
    return end.signal != 0 ? -end.signal : end.status;
  }
};

worker_report ask(child& c, int index) {
  write_exactly(c.worker.channel.get(), &index, sizeof index);
  worker_report report;
  REQUIRE(read_exactly(c.worker.channel.get(), &report, sizeof report));
  return report;
}

// Threads that keep running until destroyed.
class busy_threads {
 public:
  explicit busy_threads(int count) {
    for (int i = 0; i < count; ++i)
      threads_.emplace_back([this] {
        while (!stop_.load()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      });
  }
  ~busy_threads() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace

TEST_CASE("every start method makes a worker that is our child and knows its index") {
  REQUIRE(registered);
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  REQUIRE_FALSE(xjob::worker_index().has_value());
  child c(launcher::launch_worker(method, "test.report", 1));
  worker_report const report = ask(c, 7);
  CHECK(report.parent == getpid());
  CHECK(report.pid == c.worker.child.pid());
  CHECK(report.index == 7);
  CHECK(report.launcher_variables == 0);
  CHECK(report.channel_inherited == 0);
  c.worker.channel.reset();
  REQUIRE(c.wait() == 0);
}

TEST_CASE("forkserver and spawn workers start with one thread while the caller runs several") {
  auto const method = GENERATE(start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  busy_threads threads(3);
  REQUIRE(thread_count() >= 4);
  child c(launcher::launch_worker(method, "test.report", 1));
  CHECK(ask(c, 0).threads == 1);
}

TEST_CASE("spawn is a fresh program, forkserver a copy of the program at init, fork a copy of now") {
  changed_after_main = 2;
  struct expected {
    start_method method;
    bool main_ran_again;
    int changed_after_main;
  };
  for (expected const e : {expected{start_method::fork, false, 2}, expected{start_method::forkserver, false, 1},
                           expected{start_method::spawn, true, 1}}) {
    INFO("start method " << xjob::to_string(e.method));
    child c(launcher::launch_worker(e.method, "test.report", 1));
    worker_report const report = ask(c, 0);
    CHECK(report.changed_after_main == e.changed_after_main);
    CHECK(report.pid_at_main_start == (e.main_ran_again ? report.pid : static_cast<long>(getpid())));
  }
  changed_after_main = 1;
}

TEST_CASE("an unknown worker entry is an invalid_argument naming it") {
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  XJOB_REQUIRE_THROWS_WITH_TEXT((void)launcher::launch_worker(method, "no.such.entry", 1), xjob::invalid_argument,
                                "\"no.such.entry\"");
}

TEST_CASE("forkserver refuses in a forked copy of the program, whose workers it would not parent") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  pid_t const pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    char verdict = 'n';
    try {
      (void)launcher::launch_worker(start_method::forkserver, "test.clock", 1);
    } catch (xjob::invalid_argument const& e) {
      verdict = std::strstr(e.what(), "only in the process that ran xjob::init()") != nullptr ? 'y' : 'm';
    } catch (...) {
      verdict = 'o';
    }
    write_exactly(fds[1], &verdict, 1);
    _exit(0);
  }
  close(fds[1]);
  char verdict = 0;
  REQUIRE(read_exactly(fds[0], &verdict, 1));
  close(fds[0]);
  REQUIRE(waitpid(pid, nullptr, 0) == pid);
  REQUIRE(verdict == 'y');
}

TEST_CASE("launching workers leaks no descriptor and no child") {
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  xjob::testing::process_resources const before;
  for (int i = 0; i < 3; ++i) {
    child c(launcher::launch_worker(method, "test.clock", 1));
    std::int64_t stamp = 0;
    REQUIRE(read_exactly(c.worker.channel.get(), &stamp, sizeof stamp));
    REQUIRE(c.wait() == 0);
  }
  REQUIRE(xjob::testing::open_descriptor_count() == before.descriptors);
  REQUIRE(xjob::testing::child_processes() == before.children);
}

// Not a check (timings are noisy here): prints what each method costs, with
// and without 512 MiB of private memory in the caller.
TEST_CASE("what each start method costs (printed)") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  int const rounds = 3;
#else
  int const rounds = 15;
#endif
  auto measure = [&](start_method method, char const* label) {
    std::vector<double> to_first_instruction;
    std::vector<double> caller_blocked;
    for (int round = 0; round < rounds; ++round) {
      std::int64_t const begin = monotonic_ns();
      child c(launcher::launch_worker(method, "test.clock", 1));
      std::int64_t const returned = monotonic_ns();
      std::int64_t started = 0;
      REQUIRE(read_exactly(c.worker.channel.get(), &started, sizeof started));
      REQUIRE(c.wait() == 0);
      to_first_instruction.push_back(double(started - begin) / 1e6);
      caller_blocked.push_back(double(returned - begin) / 1e6);
    }
    std::printf("start method %-10s %-24s first instruction after %7.3f ms, caller blocked %7.3f ms (medians of %d)\n",
                std::string(xjob::to_string(method)).c_str(), label, median(to_first_instruction),
                median(caller_blocked), rounds);
    return median(caller_blocked);
  };
  for (auto method : {start_method::fork, start_method::forkserver, start_method::spawn}) measure(method, "small caller");
  std::size_t const bytes = std::size_t(512) << 20;
  std::vector<char> buffer(bytes);
  for (std::size_t i = 0; i < bytes; i += 4096) buffer[i] = static_cast<char>(i);
  double const fork_cost = measure(start_method::fork, "caller holds 512 MiB");
  double const forkserver_cost = measure(start_method::forkserver, "caller holds 512 MiB");
  double const spawn_cost = measure(start_method::spawn, "caller holds 512 MiB");
  std::printf("with 512 MiB of private memory the caller is blocked %.3f ms by fork, %.3f ms by forkserver, %.3f ms "
              "by spawn\n",
              fork_cost, forkserver_cost, spawn_cost);
  std::fflush(stdout);
  REQUIRE(buffer[4096] == static_cast<char>(4096));
}

namespace {

constexpr char const* half_request_mode = "--fork-server-half-request";

// Run as its own program (the case below): a request is pending when the
// fork server dies; that request and every later one fail with
// xjob::error, the later ones saying the server was given up. Exit status
// 0 if so, else the number of the check that failed.
int fork_server_half_request() {
  std::vector<pid_t> const children = xjob::testing::child_processes();
  if (children.size() != 1) return 10;  // just the fork server
  pid_t const server = children[0];
  if (kill(server, SIGSTOP) != 0) return 11;
  std::atomic<int> first_failed{0};
  std::thread pending([&] {
    try {
      child c(launcher::launch_worker(start_method::forkserver, "test.clock", 1));
    } catch (xjob::error const&) {
      first_failed = 1;
    } catch (...) {
      first_failed = 2;
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the request is in the server's socket
  kill(server, SIGKILL);
  pending.join();
  if (first_failed.load() != 1) return 12;
  try {
    child c(launcher::launch_worker(start_method::forkserver, "test.clock", 1));
    return 13;
  } catch (xjob::error const& e) {
    if (std::string(e.what()).find("cannot be used any more") == std::string::npos) return 14;
  }
  // The other methods are not affected.
  child c(launcher::launch_worker(start_method::spawn, "test.clock", 1));
  std::int64_t stamp = 0;
  if (!read_exactly(c.worker.channel.get(), &stamp, sizeof stamp) || c.wait() != 0) return 15;
  return 0;
}

}  // namespace

TEST_CASE("a fork server that died with a request pending is given up, and says why") {
  std::string const self = "/proc/self/exe";
  xjob::testing::child_process program([&] {
    execl(self.c_str(), self.c_str(), half_request_mode, static_cast<char*>(nullptr));
    return 127;
  });
  REQUIRE(program.wait() == 0);
}

TEST_CASE("the one failure record goes through whole, and a malformed one is named") {
  using xjob::detail::process::decode_failure;
  using xjob::detail::process::encode_failure;
  using xjob::detail::process::failure_record;
  std::string const bytes = encode_failure({37, "std::runtime_error", std::string("bad\0item", 8)});
  failure_record const back = decode_failure(bytes, "a test record");
  REQUIRE(back.task == 37);
  REQUIRE(back.type_name == "std::runtime_error");
  REQUIRE(back.message == std::string("bad\0item", 8));
  REQUIRE(decode_failure(encode_failure({failure_record::no_task, "", ""}), "x").task == failure_record::no_task);
  REQUIRE(decode_failure("", "x").type_name == "unknown exception");
  REQUIRE_THROWS_WITH(decode_failure(bytes.substr(0, 10), "a test record"),
                      Catch::Contains("a test record arrived malformed"));
  std::string lying = bytes;
  lying[8] = char(0x7f);  // a type name longer than the record
  REQUIRE_THROWS_AS(decode_failure(lying, "a test record"), xjob::error);
}

int main(int argc, char** argv) {
  pid_at_main_start = getpid();
  xjob::init(argc, argv);
  if (argc == 2 && std::strcmp(argv[1], half_request_mode) == 0) return fork_server_half_request();
  return Catch::Session().run(argc, argv);
}
