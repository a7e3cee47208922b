// Helpers shared by the tests: temporary folders, captured stderr, and a
// check that an expression throws a given type whose message holds a text.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <xjob/backend.hpp>
#include <xjob/shared_array.hpp>

namespace xjob::testing {

// A backend of plain std::threads, one per worker, as a user would plug in.
// Its stacks have no oneTBB frame, so ThreadSanitizer checks all of xjob's
// own synchronisation through it.
class std_thread_backend final : public xjob::backend {
 public:
  void run(xjob::batch_call& call) override {
    std::vector<std::jthread> threads;
    for (int w = 1; w < call.worker_count(); ++w) threads.emplace_back([&call, w] { call.work(w); });
    call.work(0);
  }
};

// Runs calls as std_thread_backend does and declares the capabilities it is
// made with, to see what the front end decides from them.
class declaring_backend final : public xjob::backend {
 public:
  explicit declaring_backend(xjob::backend_capabilities declared) : declared_(declared) {}
  void run(xjob::batch_call& call) override { inner_.run(call); }
  [[nodiscard]] xjob::backend_capabilities capabilities() const noexcept override { return declared_; }

 private:
  xjob::backend_capabilities declared_;
  std_thread_backend inner_;
};

// Counters that tasks may bump from any backend's workers, worker processes
// included: atomics in shared memory.
class shared_counters {
 public:
  explicit shared_counters(std::size_t count) : values_({count}) {}
  void add(std::size_t i, long amount = 1) const {
    std::atomic_ref<long>(values_.data()[i]).fetch_add(amount, std::memory_order_relaxed);
  }
  [[nodiscard]] long operator[](std::size_t i) const {
    return std::atomic_ref<long>(values_.data()[i]).load(std::memory_order_relaxed);
  }

 private:
  xjob::shared_array<long> values_;
};

// A fresh folder under TEST_TMPDIR (or /tmp), removed on destruction.
class temp_dir {
 public:
  temp_dir() {
    char const* base = std::getenv("TEST_TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/xjob-test-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(temp_dir const&) = delete;
  temp_dir& operator=(temp_dir const&) = delete;
  [[nodiscard]] std::filesystem::path const& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(std::string const& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Runs a Python program with Debian's interpreter (which has python3-numpy):
// its exit status and what it printed (stdout and stderr).
struct python_run {
  int status = -1;
  std::string output;
};
inline python_run run_python(std::string const& program) {
  temp_dir dir;
  {
    std::ofstream(dir / "check.py") << program;
  }
  std::string const command = "/usr/bin/python3 " + (dir / "check.py").string() + " 2>&1";
  python_run run;
  std::FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[512];
  while (std::size_t n = std::fread(buffer, 1, sizeof buffer, pipe)) run.output.append(buffer, n);
  run.status = pclose(pipe);
  return run;
}

// Redirects stderr to a file for its lifetime; text() reads what was written.
class captured_stderr {
 public:
  captured_stderr() : file_(std::tmpfile()) {
    std::fflush(stderr);
    saved_ = dup(fileno(stderr));
    dup2(fileno(file_), fileno(stderr));
  }
  ~captured_stderr() { restore(); }
  captured_stderr(captured_stderr const&) = delete;
  captured_stderr& operator=(captured_stderr const&) = delete;

  std::string text() {
    restore();
    std::rewind(file_);
    std::string out;
    char buffer[4096];
    while (std::size_t n = std::fread(buffer, 1, sizeof buffer, file_)) out.append(buffer, n);
    return out;
  }

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    dup2(saved_, fileno(stderr));
    close(saved_);
    saved_ = -1;
  }
  std::FILE* file_;
  int saved_ = -1;
};

// Number of open file descriptors of this process.
inline std::size_t open_descriptor_count() {
  std::size_t count = 0;
  for ([[maybe_unused]] auto const& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

// Runs `body` as a daemon would: with stdin and stdout closed. Returns what
// went wrong, or "" if nothing did: a throw, or a descriptor xjob made that
// took the place of stdin or stdout (a worker forked later would write its
// printf into it). Nothing of Catch's may run inside `body`; keep what it
// makes alive in the caller's variables, so it is checked while it lives.
inline std::string without_stdin_and_stdout(std::function<void()> const& body) {
  std::fflush(nullptr);
  int const saved_stdin = fcntl(0, F_DUPFD_CLOEXEC, 3);
  int const saved_stdout = fcntl(1, F_DUPFD_CLOEXEC, 3);
  if (saved_stdin < 3 || saved_stdout < 3) return "cannot save stdin and stdout";
  close(0);
  close(1);
  std::string failure;
  try {
    body();
    if (fcntl(0, F_GETFD) != -1) failure = "a descriptor took the place of stdin";
    if (fcntl(1, F_GETFD) != -1) failure = "a descriptor took the place of stdout";
  } catch (std::exception const& e) {
    failure = e.what();
  }
  dup2(saved_stdin, 0);
  dup2(saved_stdout, 1);
  close(saved_stdin);
  close(saved_stdout);
  return failure;
}

}  // namespace xjob::testing

// The expression throws `type` and its what() contains `text` (the
// expression is evaluated twice).
#define XJOB_REQUIRE_THROWS_WITH_TEXT(expression, type, text) \
  do {                                                        \
    REQUIRE_THROWS_AS(expression, type);                      \
    REQUIRE_THROWS_WITH(expression, Catch::Contains(text));   \
  } while (false)
