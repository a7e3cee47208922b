// Starting a worker process by each start method; see worker_launcher.hpp.
#include "worker_launcher.hpp"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <xjob/errors.hpp>
#include <xjob/init.hpp>

#include "src/core/fd.hpp"
#include "fork_server.hpp"
#include "fork_support.hpp"

extern char** environ;

namespace xjob::detail::process {

namespace {


// The registry: constant-initialised, filled during static initialisation,
// read-only afterwards, so every process of the program (a fork, a clone of
// the fork server, a fresh exec) has the same entries.
struct registered_entry {
  char const* name;
  worker_entry entry;
};
constexpr std::size_t max_entries = 64;
constexpr std::size_t max_entry_name = 63;  // the fork server's request holds 64 bytes
std::array<registered_entry, max_entries> entries{};
std::size_t entry_count = 0;

// The kernel's sigaction, for raw system calls in the spawn child.
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  unsigned long mask;
};

// What the spawn child needs; the child writes `error` if exec fails. The
// child shares the caller's memory until it execs (CLONE_VM | CLONE_VFORK).
struct spawn_request {
  char const* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  int channel_fd = -1;
  sigset_t const* caller_mask = nullptr;
  int error = 0;
};

// The spawn child, between clone and exec. It runs on its own small stack
// in the caller's memory while the calling thread is suspended, so it makes
// raw system calls only (no locks, no allocation, nothing a sanitizer
// intercepts), and is not instrumented.
__attribute__((no_sanitize("address", "thread", "undefined"))) int spawn_child(void* argument) {
  auto* request = static_cast<spawn_request*>(argument);
  // No handler of the caller may run in here (it would run on the caller's
  // memory): every caught signal goes back to its default action, glibc's
  // internal ones (32, 33) are ignored, and exec resets the rest anyway.
  for (int signal_number = 1; signal_number < 65; ++signal_number) {
    if (signal_number == SIGKILL || signal_number == SIGSTOP) continue;
    kernel_sigaction current{};
    if (syscall(SYS_rt_sigaction, signal_number, nullptr, &current, sizeof current.mask) != 0) continue;
    bool const internal = signal_number == 32 || signal_number == 33;
    if (!internal && (current.handler == SIG_DFL || current.handler == SIG_IGN)) continue;
    kernel_sigaction const replacement{internal ? SIG_IGN : SIG_DFL, 0, nullptr, 0};
    syscall(SYS_rt_sigaction, signal_number, &replacement, nullptr, sizeof replacement.mask);
  }
  // Dies with the calling thread from here on; survives exec.
  syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  // The worker's end of the channel stays open across exec, in this copy
  // of the descriptor table only.
  long result = syscall(SYS_fcntl, request->channel_fd, F_SETFD, 0);
  if (result == 0) {
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, request->caller_mask, nullptr, sizeof(unsigned long));
    syscall(SYS_execve, request->path, request->argv, request->envp);
  }
  request->error = errno != 0 ? errno : EINVAL;
  syscall(SYS_exit, 127);
  return 127;
}

[[nodiscard]] child_process spawn_worker(char const* entry_name, int cpu_share, int worker_fd) {
  char const* argv0 = saved_argv0();
  if (argv0 == nullptr) throw invalid_argument("start method spawn needs xjob::init(argc, argv) at the top of main");
  // Everything the child needs is built here, before the clone.
  std::string argv0_copy = argv0;
  std::array<char*, 2> argv{argv0_copy.data(), nullptr};
  std::array<std::string, 4> variables{
      fmt::format("XJOB_WORKER_ENTRY={}", entry_name), fmt::format("XJOB_WORKER_FD={}", worker_fd),
      fmt::format("XJOB_WORKER_CPU_SHARE={}", cpu_share), fmt::format("XJOB_WORKER_OWNER={:010}", getpid())};
  // Ten digits, rewritten in place in a child forked through a go-between,
  // whose parent (the owner it checks for) is the go-between.
  char* const owner_digits = variables[3].data() + variables[3].size() - 10;
  std::vector<char*> envp;
  for (char** variable = environ; variable != nullptr && *variable != nullptr; ++variable)
    if (std::strncmp(*variable, "XJOB_WORKER_", 12) != 0) envp.push_back(*variable);
  for (std::string& variable : variables) envp.push_back(variable.data());
  envp.push_back(nullptr);

  sigset_t all;
  sigset_t caller_mask;
  sigfillset(&all);
  spawn_request request;
  request.path = "/proc/self/exe";
  request.argv = argv.data();
  request.envp = envp.data();
  request.channel_fd = worker_fd;
  request.caller_mask = &caller_mask;
  constexpr std::size_t stack_bytes = std::size_t(64) << 10;
  auto stack = std::make_unique<unsigned char[]>(stack_bytes);
  // Blocked across the clone, so that no handler runs in the child before
  // it reset them; the child restores the caller's mask just before exec.
  pthread_sigmask(SIG_SETMASK, &all, &caller_mask);
  // CLONE_VM | CLONE_VFORK: no copy of the caller's page tables (a fork of
  // a caller holding 1 GiB of private memory costs ~35 ms); the calling
  // thread resumes once the child has exec'd or failed.
  child_process child;
  // A spawned worker sends SIGCHLD whatever it was cloned with (exec sets
  // a child's exit signal back to SIGCHLD), so while the program's SIGCHLD
  // disposition takes children (see child.hpp) it is forked through a
  // go-between instead, and the fork itself is a plain fork_child.
  // ThreadSanitizer also needs the plain fork: it intercepts clone() and
  // runs its fork-child bookkeeping in the CLONE_VM child, that is, in the
  // caller's own memory, and the caller then counts as a child of a
  // multi-threaded fork and dies at its next thread start. In a plain fork
  // an exec failure shows as an exit status of 127 instead of
  // request.error.
#if defined(__SANITIZE_THREAD__)
  bool const plain_fork = true;
#else
  bool const plain_fork = sigchld_takes_children();
#endif
  if (plain_fork) {
    forked_child side;
    bool in_child = false;
    try {
      in_child = fork_child(child, side, "a spawned worker process");
    } catch (...) {
      pthread_sigmask(SIG_SETMASK, &caller_mask, nullptr);
      throw;
    }
    if (in_child) {
      for (int digit = 9, owner = side.parent; digit >= 0; --digit, owner /= 10) owner_digits[digit] = char('0' + owner % 10);
      spawn_child(&request);
    }
    pthread_sigmask(SIG_SETMASK, &caller_mask, nullptr);
  } else {
    pid_t const pid = clone(spawn_child, stack.get() + stack_bytes, CLONE_VM | CLONE_VFORK | SIGCHLD, &request);
    int const saved = errno;
    pthread_sigmask(SIG_SETMASK, &caller_mask, nullptr);
    if (pid < 0) throw_errno(saved, "cannot start a worker process (clone for spawn)");
    child = child_process(pid);
  }
  if (request.error != 0) {
    (void)child.wait(true);
    throw_errno(request.error, "cannot exec /proc/self/exe for a spawned worker process");
  }
  return child;
}

}  // namespace

bool register_worker_entry(char const* name, worker_entry entry) noexcept {
  if (name == nullptr || entry == nullptr || std::strlen(name) > max_entry_name || entry_count == max_entries ||
      find_worker_entry(name) != nullptr)
    return false;
  entries[entry_count++] = {name, entry};
  return true;
}

worker_entry find_worker_entry(char const* name) noexcept {
  for (std::size_t i = 0; i < entry_count; ++i)
    if (std::strcmp(entries[i].name, name) == 0) return entries[i].entry;
  return nullptr;
}

void run_worker(worker_entry entry, int channel_fd, pid_t owner, int cpu_share, sigset_t const* mask) noexcept {
  if (!become_worker(owner, cpu_share)) _exit(1);
  if (mask != nullptr) pthread_sigmask(SIG_SETMASK, mask, nullptr);
  entry(channel_fd);
  std::fflush(nullptr);
  _exit(1);
}

launched_worker launch_worker(start_method method, char const* entry_name, int cpu_share) {
  worker_entry const entry = entry_name != nullptr ? find_worker_entry(entry_name) : nullptr;
  if (entry == nullptr) {
    std::string known;
    for (std::size_t i = 0; i < entry_count; ++i) known += fmt::format("{}\"{}\"", i == 0 ? "" : ", ", entries[i].name);
    throw invalid_argument(fmt::format("no worker entry named \"{}\" is registered (registered: {})",
                                       entry_name != nullptr ? entry_name : "(null)", known));
  }
  if (method != start_method::fork && !xjob::initialized())
    throw invalid_argument(
        fmt::format("start method {} needs xjob::init(argc, argv) at the top of main", to_string(method)));
  cpu_share = std::max(1, cpu_share);
  // Neither end on 0-2 (see fd.hpp): a worker forked later would take the
  // caller's end as its stdin or stdout.
  unique_fd caller_end;
  unique_fd worker_end;
  make_socket_pair(SOCK_STREAM, caller_end, worker_end, "a worker process");
  launched_worker launched;
  switch (method) {
    case start_method::fork:
      prepare_to_fork();
      fork_worker(launched.child, cpu_share, "a worker process", [&] {
        caller_end.reset();
        entry(worker_end.release());
      });
      break;
    case start_method::forkserver:
      launched.child = start_by_fork_server(entry_name, cpu_share, worker_end.get());
      break;
    case start_method::spawn:
      launched.child = spawn_worker(entry_name, cpu_share, worker_end.get());
      break;
  }
  launched.channel = std::move(caller_end);
  return launched;
}

}  // namespace xjob::detail::process
