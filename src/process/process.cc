#include <xjob/process.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>

#include <fmt/format.h>

#include <xjob/cpu_count.hpp>
#include <xjob/detail/task_runner.hpp>
#include <xjob/errors.hpp>
#include <xjob/worker.hpp>

#include "child.hpp"
#include "src/core/fd.hpp"
#include "fork_support.hpp"
#include "frame_channel.hpp"
#include "worker_launcher.hpp"

namespace xjob {

namespace {

using detail::throw_errno;
using detail::process::receive_all;
using detail::process::send_all;
using detail::unique_fd;

constexpr char const* entry_name = "xjob.process";
// A failure message longer than this is cut: the child writes it before it
// exits, into the socket's buffer, which the parent reads only then.
constexpr std::size_t max_message_bytes = 64 << 10;

// In the child: the exception being handled, as "<type>: <message>" to
// stderr, and as a failure record to the parent. Call only inside a catch
// block.
void report_failure(int channel) noexcept {
  try {
    detail::task_failure failure = detail::describe_current_exception(0);
    std::fprintf(stderr, "%s: %s\n", failure.type_name.c_str(), failure.message.c_str());
    failure.type_name.resize(std::min(failure.type_name.size(), max_message_bytes / 2));
    failure.message.resize(std::min(failure.message.size(), max_message_bytes / 2));
    std::string const record = detail::process::encode_failure({0, failure.type_name, failure.message});
    (void)send_all(channel, record.data(), record.size());
  } catch (...) {
    // Out of memory: the parent gets no record (error_message() empty).
    std::fprintf(stderr, "unknown exception: its message could not be formatted\n");
  }
}

// The child's life after the start method made it (a worker: SIGTERM,
// which terminate() sends, is at its default). Never returns.
template <class Body>
[[noreturn]] void run_child(int channel, Body&& body) noexcept {
  detail::set_worker_index(0);
  int status = 0;
  try {
    body();
  } catch (...) {
    report_failure(channel);
    status = 1;
  }
  std::fflush(nullptr);
  _exit(status);
}

// The entry of processes started by forkserver and spawn: reads the call
// (a length, then a cereal-encoded detail::remote_call) and runs it.
[[noreturn]] void process_entry(int channel) noexcept {
  run_child(channel, [channel] {
    std::uint64_t size = 0;
    if (!receive_all(channel, reinterpret_cast<char*>(&size), sizeof size) || size > (std::uint64_t(1) << 40))
      throw error("the call to run never arrived (the parent process ended or failed to send it)");
    std::string bytes(static_cast<std::size_t>(size), '\0');
    if (!receive_all(channel, bytes.data(), bytes.size()))
      throw error("the call to run arrived cut short (the parent process ended?)");
    auto const call = detail::decode_value<detail::remote_call>(bytes, "the call of an xjob::process");
    std::string result;
    detail::run_remote(call, result);
  });
}

[[maybe_unused]] bool const entry_registered = detail::process::register_worker_entry(entry_name, process_entry);

}  // namespace

struct process::running_child {
  detail::process::child_process child;
  unique_fd channel;
};

void process::running_child_deleter::operator()(running_child* child) const noexcept { delete child; }

process::process(process&& other) noexcept
    : method_(other.method_),
      target_(std::move(other.target_)),
      call_(std::move(other.call_)),
      has_call_(std::exchange(other.has_call_, false)),
      started_(std::exchange(other.started_, false)),
      pid_(std::exchange(other.pid_, -1)),
      child_(std::move(other.child_)),
      exit_code_(std::exchange(other.exit_code_, std::nullopt)),
      error_message_(std::move(other.error_message_)) {
  other.error_message_.clear();
}

process& process::operator=(process&& other) noexcept {
  if (this != &other) {
    release();
    method_ = other.method_;
    target_ = std::move(other.target_);
    call_ = std::move(other.call_);
    has_call_ = std::exchange(other.has_call_, false);
    started_ = std::exchange(other.started_, false);
    pid_ = std::exchange(other.pid_, -1);
    child_ = std::move(other.child_);
    exit_code_ = std::exchange(other.exit_code_, std::nullopt);
    error_message_ = std::move(other.error_message_);
    other.error_message_.clear();
  }
  return *this;
}

process::~process() { release(); }

void process::release() noexcept {
  // Started and not reaped: the child is killed (through its pidfd, never
  // a recycled pid) and reaped, so no zombie stays behind.
  child_.reset();
}

void process::start() {
  if (started_) throw error(fmt::format("xjob::process: start() was called twice (pid {})", pid_));
  if (!target_ && !has_call_) throw error("xjob::process: start() on an empty process object (moved from?)");
  if (method_ == start_method::fork) {
    start_forked();
  } else {
    start_launched();
  }
  started_ = true;
}

void process::start_forked() {
  // Neither end on 0-2 (see fd.hpp): a worker forked later would take the
  // parent's end as its stdin or stdout.
  unique_fd parent_end;
  unique_fd child_end;
  detail::make_socket_pair(SOCK_STREAM, parent_end, child_end, "a child process");
  int const cpu_share = cpu_count();
  detail::process::prepare_to_fork();
  // fork_worker blocks signals across the fork: one sent to the child at
  // once (a terminate() right after start()) must not run a handler of
  // the caller's in a child still inside fork(), with malloc's locks held.
  std::unique_ptr<running_child, running_child_deleter> started(new running_child);
  detail::process::fork_worker(started->child, cpu_share, "a child process", [&] {
    parent_end.reset();
    run_child(child_end.get(), [this] { target_->run(); });
  });
  child_end.reset();
  started->channel = std::move(parent_end);
  pid_ = started->child.pid();
  child_ = std::move(started);
}

void process::start_launched() {
  std::string message(sizeof(std::uint64_t), '\0');
  detail::encode_values(message, call_);
  std::uint64_t const size = message.size() - sizeof size;
  std::memcpy(message.data(), &size, sizeof size);
  auto worker = detail::process::launch_worker(method_, entry_name, cpu_count());
  pid_ = worker.child.pid();
  child_.reset(new running_child{std::move(worker.child), std::move(worker.channel)});
  // A child that is gone already (killed at once) has nobody to read this;
  // its exit code tells what happened.
  (void)send_all(child_->channel.get(), message.data(), message.size());
}

void process::require_started(char const* what) const {
  if (!started_) throw error(fmt::format("xjob::process: {}() before start()", what));
}

bool process::reap(bool block) const {
  if (!child_) return started_;
  detail::process::child_end const end = child_->child.wait(block);
  if (!end.ended) return false;  // still running
  // A failed wait (the go-between that forked it was killed): how it ended
  // is unknown, so exit_code() stays empty.
  if (end.error == 0) exit_code_ = end.signal != 0 ? -end.signal : end.status;
  // What the child reported before it ended; a grandchild may hold the
  // other end still, so read only what is there.
  std::string record;
  char buffer[4096];
  for (;;) {
    ssize_t const got = recv(child_->channel.get(), buffer, sizeof buffer, MSG_DONTWAIT);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    record.append(buffer, static_cast<std::size_t>(got));
    if (record.size() > max_message_bytes + 16) break;
  }
  child_.reset();
  if (!record.empty()) {
    try {
      detail::process::failure_record const failure = detail::process::decode_failure(record, "the child's failure");
      error_message_ = failure.type_name + ": " + failure.message;
    } catch (error const& e) {
      error_message_ = e.what();
    }
  }
  return true;
}

void process::join() {
  require_started("join");
  (void)reap(true);
}

bool process::join_for(std::chrono::duration<double> timeout) {
  require_started("join_for");
  if (!child_) return true;
  auto const deadline = std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                                std::max(timeout, std::chrono::duration<double>(0)));
  for (;;) {
    if (reap(false)) return true;
    double const left_ms =
        std::chrono::duration<double, std::milli>(deadline - std::chrono::steady_clock::now()).count();
    if (left_ms <= 0) return false;
    pollfd ready{child_->child.pidfd(), POLLIN, 0};
    int const result = poll(&ready, 1, static_cast<int>(std::ceil(std::min(left_ms, 1e9))));
    if (result < 0 && errno != EINTR) throw_errno(errno, "cannot wait for a child process");
  }
}

bool process::is_alive() const { return started_ && !reap(false); }

std::optional<int> process::exit_code() const {
  if (started_) (void)reap(false);
  return exit_code_;
}

void process::send_signal(int signal_number) {
  if (!child_) return;  // reaped: the pid may be someone else's now
  if (syscall(SYS_pidfd_send_signal, child_->child.pidfd(), signal_number, nullptr, 0) != 0 && errno != ESRCH)
    throw_errno(errno, "cannot signal a child process");
}

void process::terminate() {
  require_started("terminate");
  send_signal(SIGTERM);
}

void process::kill() {
  require_started("kill");
  send_signal(SIGKILL);
}

}  // namespace xjob
