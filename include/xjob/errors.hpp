// The exceptions xjob throws, all derived from xjob::error so that one catch
// clause covers the library. Failures of system calls on anonymous resources
// (mapping memory, creating threads) are std::system_error instead, as in std.
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <cstddef>
#include <exception>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>

namespace xjob {

// Base of every xjob exception.
//   try { par(calls); } catch (xjob::error const& e) { log(e.what()); }
class error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An argument that can never work: an n_jobs of 0, a chunk size of 0, an
// unknown backend, an output whose shape does not fit. The message names the
// argument and its value.
class invalid_argument : public error {
 public:
  using error::error;
};

// A .npy file that cannot be used: missing or unreadable (code() is the
// errno), not a .npy file, a dtype other than the array's, Fortran order, or
// fewer bytes than its header promises. The message names the file.
//   try { auto a = xjob::shared_array<double>::open_npy("in.npy"); }
//   catch (xjob::npy_error const& e) { std::cerr << e.what() << " " << e.path(); }
class npy_error : public error {
 public:
  npy_error(std::filesystem::path path, std::string const& problem, std::error_code code = {});

  [[nodiscard]] std::filesystem::path const& path() const noexcept { return path_; }
  [[nodiscard]] std::error_code code() const noexcept { return code_; }

 private:
  std::filesystem::path path_;
  std::error_code code_;
};

// A task threw. The call was cancelled (tasks not yet started never ran) and
// this is rethrown on the caller's thread. what() reads
// "task 17 threw std::runtime_error: boom"; the original exception is kept
// for backends that run in the caller's process. When the call spans
// machines (backend "mpi"), where() names the task's rank and host, and
// what() ends with it: "... boom (rank 2 on node7)".
//   try { par(calls); }
//   catch (xjob::task_error const& e) { retry(e.task_index()); }
class task_error : public error {
 public:
  task_error(std::size_t task_index, std::string type_name, std::string message,
             std::exception_ptr original = nullptr, std::string where = {});

  [[nodiscard]] std::size_t task_index() const noexcept { return task_index_; }
  // The demangled type of what the task threw, e.g. "std::out_of_range".
  [[nodiscard]] std::string const& type_name() const noexcept { return type_name_; }
  // The thrown exception's own what(), unchanged.
  [[nodiscard]] std::string const& message() const noexcept { return message_; }
  // The exception object itself, or nullptr when it crossed a process boundary.
  [[nodiscard]] std::exception_ptr original() const noexcept { return original_; }
  // Rethrows the original exception if there is one, else this task_error.
  [[noreturn]] void rethrow_original() const;
  // The rank and host the task ran on ("rank 2 on node7"), if the call
  // spans machines; else empty.
  [[nodiscard]] std::string const& where() const noexcept { return where_; }

 private:
  std::size_t task_index_;
  std::string type_name_;
  std::string message_;
  std::exception_ptr original_;
  std::string where_;
};

// A worker process died: killed by a signal (a segfault, abort, SIGKILL,
// the kernel's out-of-memory killer) or exited without finishing its tasks.
// The call was cancelled after the tasks other workers were running had
// finished; results already in shared memory stay. what() reads
// "worker process 4711 died running task 17: killed by signal 11 (SIGSEGV:
// Segmentation fault)". parallel_options::retries re-runs such a task on a
// fresh worker first. When the call spans machines, where() names the
// worker's rank and host, and what() too: "worker process 4711 (rank 1 on
// node3) died ...".
//   catch (xjob::worker_crashed const& e) { log(e.task_index(), e.signal()); }
class worker_crashed : public error {
 public:
  worker_crashed(std::optional<std::size_t> task_index, int pid, int signal, int exit_status, int attempts,
                 std::string where = {});

  // The task the worker was running, if it was running one.
  [[nodiscard]] std::optional<std::size_t> task_index() const noexcept { return task_index_; }
  [[nodiscard]] int pid() const noexcept { return pid_; }
  // The signal that killed it, or 0 if it exited.
  [[nodiscard]] int signal() const noexcept { return signal_; }
  // Its exit status if it exited, or -1 if a signal killed it.
  [[nodiscard]] int exit_status() const noexcept { return exit_status_; }
  // How many times the task ran, each time killing its worker.
  [[nodiscard]] int attempts() const noexcept { return attempts_; }
  // The rank and host of the worker, if the call spans machines; else empty.
  [[nodiscard]] std::string const& where() const noexcept { return where_; }

 private:
  std::optional<std::size_t> task_index_;
  int pid_;
  int signal_;
  int exit_status_;
  int attempts_;
  std::string where_;
};

// A call or one of its tasks ran longer than its limit
// (parallel_options::call_timeout, task_timeout). For a task, its worker was
// killed and task_index() names it; for the call, every worker was killed.
//   catch (xjob::timeout_error const& e) { if (e.task_index()) skip(*e.task_index()); }
class timeout_error : public error {
 public:
  timeout_error(std::string const& what, std::optional<std::size_t> task_index, std::chrono::duration<double> limit);

  [[nodiscard]] std::optional<std::size_t> task_index() const noexcept { return task_index_; }
  [[nodiscard]] std::chrono::duration<double> limit() const noexcept { return limit_; }

 private:
  std::optional<std::size_t> task_index_;
  std::chrono::duration<double> limit_;
};

// A parallel call stopped because its parallel_options::stop was requested:
// no task started after that, those running finished, and the results are
// dropped. done() says how many tasks had finished.
//   std::stop_source stop;
//   try { par.map(f, items); } catch (xjob::cancelled const& e) { log(e.done(), "tasks ran"); }
class cancelled : public error {
 public:
  cancelled(std::size_t done, std::size_t total);
  [[nodiscard]] std::size_t done() const noexcept { return done_; }
  [[nodiscard]] std::size_t total() const noexcept { return total_; }

 private:
  std::size_t done_;
  std::size_t total_;
};

// A process_pool future was cancelled before its task started, so it has no
// result (concurrent.futures' CancelledError).
//   if (!f.cancelled()) use(f.get());
class task_cancelled : public error {
 public:
  using error::error;
};

// A process_pool can run no more tasks: its initializer failed in a worker
// (what() says which, and how), or it was shut down. Tasks not yet started
// fail with this (concurrent.futures' BrokenProcessPool).
//   catch (xjob::pool_broken const& e) { std::cerr << e.what(); }
class pool_broken : public error {
 public:
  using error::error;
};

namespace detail {
// The one way xjob reports a failed system call: std::system_error(code,
// generic_category) whose what() says what failed, as "cannot <verb>
// <what>", then the system's reason.
//   if (pipe2(fds, O_CLOEXEC) != 0) xjob::detail::throw_errno(errno, "cannot create a pipe for a worker");
[[noreturn]] void throw_errno(int code, std::string const& what_failed);
}  // namespace detail

}  // namespace xjob
