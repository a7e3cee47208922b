// xjob::process with every start method: the child is ours and knows who it
// is, arguments arrive, throws and kills are reported as Python does, join
// with a timeout, daemon semantics (the destructor kills and reaps; a child
// dies with its parent), and nothing is left behind.
#include <xjob/process.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <xjob/errors.hpp>
#include <xjob/init.hpp>
#include <xjob/worker.hpp>

#include "process_support.hpp"
#include "test_support.hpp"

extern char** environ;

using xjob::start_method;
using namespace std::chrono_literals;

namespace {

// Set by main before xjob::init: the program's pid there, or a spawned
// worker's own (main ran again in it).
long pid_at_main_start = 0;
// Changed by a test after main started.
int changed_after_main = 1;

int thread_count() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Threads:", 0) == 0) return std::atoi(line.c_str() + 8);
  return -1;
}

void write_text(std::string const& path, std::string const& text) {
  std::ofstream(path) << text;
}

std::string read_text(std::string const& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// What a child writes about itself: "ppid pid index threads pid_at_main changed".
void report_to(std::string path) {
  std::ostringstream text;
  text << getppid() << ' ' << getpid() << ' ' << xjob::worker_index().value_or(-1) << ' ' << thread_count() << ' '
       << pid_at_main_start << ' ' << changed_after_main;
  write_text(path, text.str());
}

struct report {
  long parent = 0, pid = 0, index = 0, threads = 0, pid_at_main = 0, changed = 0;
};

report read_report(std::string const& path) {
  report r;
  std::istringstream(read_text(path)) >> r.parent >> r.pid >> r.index >> r.threads >> r.pid_at_main >> r.changed;
  return r;
}

// A type that travels through cereal.
struct sample {
  std::string label;
  std::vector<double> values;
  template <class Archive>
  void serialize(Archive& archive) {
    archive(label, values);
  }
};

struct plain_point {
  int x = 0;
  int y = 0;
};

void describe_arguments(std::string path, std::vector<int> numbers, sample s, plain_point p) {
  int sum = 0;
  for (int n : numbers) sum += n;
  double total = 0;
  for (double v : s.values) total += v;
  std::ostringstream text;
  text << sum << ' ' << s.label << ' ' << total << ' ' << p.x << ' ' << p.y;
  write_text(path, text.str());
}

void throw_runtime_error(int code) { throw std::runtime_error("boom " + std::to_string(code)); }

[[noreturn]] void sleep_forever() {
  for (;;) pause();
}

constexpr start_method all_methods[] = {start_method::fork, start_method::forkserver, start_method::spawn};

// Threads that keep running until destroyed.
class busy_threads {
 public:
  explicit busy_threads(int count) {
    for (int i = 0; i < count; ++i)
      threads_.emplace_back([this] {
        while (!stop_.load()) std::this_thread::sleep_for(1ms);
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

}  // namespace

TEST_CASE("a process is our child, knows its pid and index, and starts with one thread") {
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  xjob::testing::temp_dir dir;
  std::string const path = dir / "report";
  busy_threads threads(3);
  xjob::process p(method, report_to, path);
  REQUIRE(p.pid() == -1);
  REQUIRE_FALSE(p.is_alive());
  REQUIRE_FALSE(p.exit_code().has_value());
  p.start();
  REQUIRE(p.pid() > 0);
  p.join();
  REQUIRE(p.exit_code() == 0);
  REQUIRE(p.error_message().empty());
  REQUIRE_FALSE(p.is_alive());
  report const r = read_report(path);
  CHECK(r.parent == getpid());
  CHECK(r.pid == p.pid());
  CHECK(r.index == 0);
  CHECK(r.threads == 1);
  CHECK_FALSE(xjob::worker_index().has_value());
}

TEST_CASE("spawn runs a fresh program, forkserver a copy of the program at init, fork a copy of now") {
  xjob::testing::temp_dir dir;
  changed_after_main = 2;
  for (start_method method : all_methods) {
    INFO("start method " << xjob::to_string(method));
    std::string const path = dir / std::string(xjob::to_string(method));
    xjob::process p(method, report_to, path);
    p.start();
    p.join();
    REQUIRE(p.exit_code() == 0);
    report const r = read_report(path);
    CHECK(r.changed == (method == start_method::fork ? 2 : 1));
    CHECK(r.pid_at_main == (method == start_method::spawn ? r.pid : static_cast<long>(getpid())));
  }
  changed_after_main = 1;
}

TEST_CASE("strings, vectors and structs arrive in the child") {
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  xjob::testing::temp_dir dir;
  std::string const path = dir / "arguments";
  xjob::process p(method, describe_arguments, path, std::vector<int>{1, 2, 3, 4}, sample{"label", {0.5, 1.5}},
                  plain_point{3, -4});
  p.start();
  p.join();
  REQUIRE(p.exit_code() == 0);
  REQUIRE(read_text(path) == "10 label 2 3 -4");
}

TEST_CASE("fork runs any callable: closures with state, move-only captures") {
  xjob::testing::temp_dir dir;
  std::string const path = dir / "closure";
  auto owned = std::make_unique<int>(41);
  std::vector<int> big(1000, 1);  // the caller's memory, seen in the child without copying
  xjob::process p(
      [owned = std::move(owned), &big, path](int add) { write_text(path, std::to_string(*owned + add + big[999])); },
      1);
  p.start();
  p.join();
  REQUIRE(p.exit_code() == 0);
  REQUIRE(read_text(path) == "43");
}

TEST_CASE("a throwing function exits with 1 and its type and message come back") {
  SECTION("fork, a closure") {
    xjob::testing::captured_stderr err;
    xjob::process p([] { throw std::out_of_range("index 9"); });
    p.start();
    p.join();
    REQUIRE(p.exit_code() == 1);
    REQUIRE(p.error_message() == "std::out_of_range: index 9");
    REQUIRE(err.text().find("std::out_of_range: index 9") != std::string::npos);
  }
  SECTION("every method, a plain function") {
    auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
    INFO("start method " << xjob::to_string(method));
    xjob::process p(method, throw_runtime_error, 42);
    p.start();
    p.join();
    REQUIRE(p.exit_code() == 1);
    REQUIRE(p.error_message() == "std::runtime_error: boom 42");
  }
}

TEST_CASE("kill and terminate report -9 and -15; join_for times out on a sleeping child") {
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  xjob::process p(method, sleep_forever);
  p.start();
  REQUIRE_FALSE(p.join_for(100ms));
  REQUIRE(p.is_alive());
  REQUIRE_FALSE(p.exit_code().has_value());
  p.kill();
  REQUIRE(p.join_for(10s));
  REQUIRE(p.exit_code() == -SIGKILL);
  REQUIRE_FALSE(p.is_alive());
  p.kill();  // reaped: does nothing
  p.join();

  xjob::process q(method, sleep_forever);
  q.start();
  q.terminate();
  q.join();
  REQUIRE(q.exit_code() == -SIGTERM);
}

TEST_CASE("the destructor of an unjoined process kills and reaps it: no zombie, no descriptor left") {
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  xjob::testing::process_resources const before;
  pid_t pid = -1;
  {
    xjob::process p(method, sleep_forever);
    p.start();
    pid = p.pid();
    REQUIRE(p.is_alive());
  }
  errno = 0;
  REQUIRE(waitpid(pid, nullptr, WNOHANG) == -1);
  REQUIRE(errno == ECHILD);
  {
    xjob::process finished(method, throw_runtime_error, 1);
    finished.start();
    finished.join();
  }
  REQUIRE(xjob::testing::open_descriptor_count() == before.descriptors);
  REQUIRE(xjob::testing::child_processes() == before.children);
}

TEST_CASE("misuse is an xjob::error: start twice, join before start, an empty process") {
  xjob::process p(start_method::fork, throw_runtime_error, 0);
  XJOB_REQUIRE_THROWS_WITH_TEXT(p.join(), xjob::error, "join() before start()");
  XJOB_REQUIRE_THROWS_WITH_TEXT(p.kill(), xjob::error, "kill() before start()");
  p.start();
  XJOB_REQUIRE_THROWS_WITH_TEXT(p.start(), xjob::error, "start() was called twice");
  xjob::process moved = std::move(p);
  moved.join();
  REQUIRE(moved.exit_code() == 1);
  XJOB_REQUIRE_THROWS_WITH_TEXT(p.start(), xjob::error, "empty process");
  xjob::process empty;
  REQUIRE_THROWS_AS(empty.start(), xjob::error);
}

TEST_CASE("a process dies with its parent") {
  auto const method = GENERATE(start_method::fork, start_method::forkserver, start_method::spawn);
  INFO("start method " << xjob::to_string(method));
  // An intermediate program (this test binary in helper mode, see main)
  // starts a child that sleeps, prints its pid, and is then killed.
  int fds[2];
  REQUIRE(pipe2(fds, O_CLOEXEC) == 0);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  std::string helper_flag = "--orphan-helper";
  std::string method_name(xjob::to_string(method));
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), helper_flag.data(), method_name.data(), nullptr};
  pid_t helper = -1;
  REQUIRE(posix_spawn(&helper, "/proc/self/exe", &actions, nullptr, argv, environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  std::string line;
  for (;;) {
    pollfd ready{fds[0], POLLIN, 0};
    REQUIRE(poll(&ready, 1, 10'000) == 1);
    char c = 0;
    REQUIRE(read(fds[0], &c, 1) == 1);
    if (c == '\n') break;
    line += c;
  }
  close(fds[0]);
  pid_t const worker = static_cast<pid_t>(std::stol(line));
  int const pidfd = static_cast<int>(syscall(SYS_pidfd_open, worker, 0));
  REQUIRE(pidfd >= 0);  // alive (or a zombie) until its parent dies
  REQUIRE(kill(helper, SIGKILL) == 0);
  REQUIRE(waitpid(helper, nullptr, 0) == helper);
  pollfd ended{pidfd, POLLIN, 0};
  CHECK(poll(&ended, 1, 5'000) == 1);  // readable once the process has ended
  close(pidfd);
  CHECK(xjob::testing::process_ended(worker));
}

int main(int argc, char** argv) {
  pid_at_main_start = getpid();
  xjob::init(argc, argv);
  if (argc == 3 && std::string(argv[1]) == "--orphan-helper") {
    xjob::process p(xjob::parse_start_method(argv[2]), sleep_forever);
    p.start();
    std::printf("%d\n", p.pid());
    std::fflush(stdout);
    sleep_forever();
  }
  return Catch::Session().run(argc, argv);
}
