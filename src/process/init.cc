// xjob::init: the fork server, and the worker side of start_method::spawn.
//
// The fork server is a child forked by init() at the top of main, while the
// program has one thread and little memory. It stays single-threaded and
// does one thing: on a request (entry name, CPU share, the worker's channel
// as SCM_RIGHTS) it clones a worker with CLONE_PARENT, so the worker is the
// program's child, not the server's, and replies with its pid. A worker
// cloned from it holds no other thread's locks and none of the memory the
// program allocated after init(). The server dies with the program
// (PR_SET_PDEATHSIG, and end of file on its socket), and leaves only
// through _exit: it runs no atexit handler and writes no stdio buffer of the
// program's.
#include <xjob/init.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>

#include <xjob/errors.hpp>

#include "src/core/fd.hpp"
#include "fork_server.hpp"
#include "fork_support.hpp"
#include "frame_channel.hpp"
#include "worker_launcher.hpp"

namespace xjob {

namespace detail::process {

namespace {

// One request to the fork server, and its reply. Plain bytes on a
// SOCK_SEQPACKET socket: one message each, the descriptor attached.
struct server_request {
  char entry[64] = {};
  int cpu_share = 1;
  pid_t caller = -1;
};

struct server_reply {
  pid_t pid = -1;
  int error = 0;        // an errno value, or 0
  int relayed = 0;      // 1: the worker's go-between relay is attached, pid is the go-between's
};

// The fork server's messages: one SOCK_SEQPACKET datagram each, with at
// most one descriptor (a request: the worker's channel; a reply: the
// go-between's relay, if any).
bool send_message(int socket, void const* bytes, std::size_t size, int fd) noexcept {
  iovec const part{const_cast<void*>(bytes), size};
  return send_with_fds(socket, std::span(&part, 1), fd >= 0 ? std::span(&fd, 1) : std::span<int const>()) ==
         static_cast<ssize_t>(size);
}

// Returns the datagram's size (0: the other end is gone), or -1 with errno
// (EPROTO: cut short, or more than one descriptor). Throws std::bad_alloc.
ssize_t receive_message(int socket, void* bytes, std::size_t size, unique_fd& fd) {
  std::vector<unique_fd> fds;
  bool cut = false;
  ssize_t const received = receive_with_fds(socket, bytes, size, fds, cut);
  if (received < 0) return received;
  if (cut || fds.size() > 1) {
    errno = EPROTO;
    return -1;
  }
  fd = fds.empty() ? unique_fd() : std::move(fds.front());
  return received;
}

// What init() recorded. Written once by init() (before any other thread
// should exist) before `initialized` is set, read afterwards.
struct init_record {
  std::string argv0;
  pid_t program = -1;  // the process that ran init() and owns the server; -1 in a spawned worker
  int server_fd = -1;
  pid_t server_pid = -1;
};

init_record& record() {
  static init_record instance;
  return instance;
}

std::atomic<bool> initialized_flag{false};
std::mutex init_mutex;
std::mutex server_mutex;
// Why the fork server was given up after a half-done request; empty while
// it can be used. Guarded by server_mutex.
std::string server_unusable_why;

// Number of threads of this process (1 if it cannot tell).
int thread_count() noexcept {
  int const fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 1;
  char text[1024];
  ssize_t const length = read(fd, text, sizeof text - 1);
  close(fd);
  if (length <= 0) return 1;
  text[length] = '\0';
  // "pid (name) S ppid ...": num_threads is field 20; fields count from the last ')'.
  char const* field = std::strrchr(text, ')');
  for (int index = 2; field != nullptr && index < 20; ++index) {
    field = std::strchr(field + 1, ' ');
  }
  return field != nullptr ? static_cast<int>(std::strtol(field + 1, nullptr, 10)) : 1;
}

// The server's loop; never returns. `relay`: the server was forked with
// an exit signal (threads ran at init), which workers cloned with
// CLONE_PARENT would inherit, so each worker is forked through a
// go-between instead (see child.hpp).
[[noreturn]] void serve(int fd, pid_t program, bool relay) noexcept {
  // Die with the program; if it is gone already, do not serve.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != program) _exit(0);
  // A Ctrl-C at the terminal reaches the whole process group: the program
  // decides what it means, the server stays. Workers get the program's own
  // disposition back. The go-betweens, the server's own children, are
  // reaped by the kernel.
  struct sigaction program_sigint {};
  struct sigaction program_sigchld {};
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGINT, &ignore, &program_sigint);
  sigaction(SIGCHLD, relay ? &ignore : nullptr, &program_sigchld);
  for (;;) {
    server_request request;
    unique_fd worker_channel;
    ssize_t received = -1;
    try {
      received = receive_message(fd, &request, sizeof request, worker_channel);
    } catch (...) {
      _exit(1);  // out of memory: the program finds the server gone
    }
    if (received == 0) _exit(0);  // the program closed its end: it is ending
    if (received < 0 && errno != EPROTO) _exit(1);
    int const worker_fd = worker_channel.get();
    server_reply reply;
    unique_fd relay_end;
    request.entry[sizeof request.entry - 1] = '\0';
    worker_entry const entry = find_worker_entry(request.entry);
    if (static_cast<std::size_t>(received) != sizeof request || worker_fd < 0 || request.caller != program) {
      reply.error = EPROTO;
    } else if (entry == nullptr) {
      reply.error = ENOENT;
    } else {
      // Signals stay blocked in the child until it is a worker.
      sigset_t all;
      sigset_t server_mask;
      sigfillset(&all);
      sigprocmask(SIG_SETMASK, &all, &server_mask);
      long pid = -1;
      pid_t parent = program;
      if (relay) {
        forked_child side;
        try {
          if (fork_through_go_between(side, "a forkserver worker", relay_end, parent)) {
            parent = side.parent;
            pid = 0;
          } else {
            pid = parent;
            reply.relayed = 1;
          }
        } catch (std::system_error const& e) {
          errno = e.code().value();
        }
      } else {
        // fork() but with the program as the parent. The child starts as a
        // copy of this single thread, on the same stack, like fork's
        // child. The exit signal is the server's own (CLONE_PARENT),
        // whatever is asked for here: none.
        pid = syscall(SYS_clone, CLONE_PARENT, 0, 0, 0, 0);
      }
      if (pid == 0) {
        close(fd);
        sigaction(SIGINT, &program_sigint, nullptr);
        sigaction(SIGCHLD, &program_sigchld, nullptr);
        run_worker(entry, worker_fd, parent, request.cpu_share, &server_mask);
      }
      if (pid < 0) reply.error = errno;
      sigprocmask(SIG_SETMASK, &server_mask, nullptr);
      reply.pid = static_cast<pid_t>(pid);
    }
    worker_channel.reset();
    (void)send_message(fd, &reply, sizeof reply, relay_end.get());
  }
}

void start_fork_server(init_record& state) {
  // Neither end on 0-2 (see fd.hpp): the program's end would be the
  // stdin or stdout of every worker it forks.
  unique_fd program_end;
  unique_fd server_end;
  make_socket_pair(SOCK_SEQPACKET, program_end, server_end, "the fork server");
  pid_t const program = getpid();
  // Flushed now, buffered output cannot be written again by a worker.
  std::fflush(nullptr);
  // With no exit signal (see child.hpp) where that is safe, in a program
  // of one thread: the workers it clones with CLONE_PARENT inherit it, so
  // the program's SIGCHLD disposition can neither reap them nor hide how
  // they ended. A raw clone skips glibc's fork handlers, which is harmless
  // with one thread (no lock is held by another) and so early (xjob's
  // fork handlers have nothing to drop yet). Otherwise a plain fork, whose
  // exit signal workers cloned with CLONE_PARENT would inherit: that
  // server forks each worker through a go-between instead.
  bool const cloned = single_threaded();
  pid_t const pid = cloned ? static_cast<pid_t>(syscall(SYS_clone, 0, 0, 0, 0, 0)) : fork();
  if (pid < 0) throw_errno(errno, "cannot fork the fork server");
  if (pid == 0) {
    program_end.reset();
    serve(server_end.release(), program, !cloned);
  }
  state.server_fd = program_end.release();
  state.server_pid = pid;
}

// Reads a non-negative integer from the environment variable `name`, or -1.
long environment_number(char const* name) noexcept {
  char const* text = std::getenv(name);
  if (text == nullptr || *text == '\0') return -1;
  char* end = nullptr;
  errno = 0;
  long const value = std::strtol(text, &end, 10);
  return errno == 0 && *end == '\0' && value >= 0 ? value : -1;
}

// In a process that start_method::spawn started: runs its worker.
[[noreturn]] void run_spawned_worker(char const* entry_variable) noexcept {
  std::string const entry_name = entry_variable;
  long const fd = environment_number("XJOB_WORKER_FD");
  long const cpu_share = environment_number("XJOB_WORKER_CPU_SHARE");
  long const owner = environment_number("XJOB_WORKER_OWNER");
  // Not for the worker's own children.
  for (char const* name : {"XJOB_WORKER_ENTRY", "XJOB_WORKER_FD", "XJOB_WORKER_CPU_SHARE", "XJOB_WORKER_OWNER"})
    unsetenv(name);
  worker_entry const entry = find_worker_entry(entry_name.c_str());
  if (entry == nullptr || fd < 0 || fd > 1'000'000 || cpu_share < 1 || owner < 1 ||
      fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC) != 0) {
    std::fprintf(stderr,
                 "xjob: this process was started as a worker (XJOB_WORKER_ENTRY=%s) but %s; exiting\n",
                 entry_name.c_str(),
                 entry == nullptr ? "the program has no worker entry of that name"
                                  : "XJOB_WORKER_FD, XJOB_WORKER_CPU_SHARE or XJOB_WORKER_OWNER is missing or wrong");
    _exit(127);
  }
  run_worker(entry, static_cast<int>(fd), static_cast<pid_t>(owner),
             static_cast<int>(cpu_share > 1'000'000 ? 1'000'000 : cpu_share));
}

}  // namespace

char const* saved_argv0() noexcept {
  return initialized_flag.load(std::memory_order_acquire) ? record().argv0.c_str() : nullptr;
}

child_process start_by_fork_server(char const* entry_name, int cpu_share, int worker_fd) {
  init_record const& state = record();
  if (!initialized_flag.load(std::memory_order_acquire)) throw invalid_argument("start method forkserver needs xjob::init(argc, argv) at the top of main");
  if (state.program < 0)
    throw invalid_argument(
        "start method forkserver is not available in a worker process started by spawn (it has no fork server of "
        "its own); use start method fork or spawn here");
  if (state.program != getpid())
    throw invalid_argument(fmt::format(
        "start method forkserver works only in the process that ran xjob::init() (pid {}), not in this process "
        "(pid {}), a worker or a forked copy of it: the fork server makes its workers children of that process; "
        "use start method fork or spawn here",
        state.program, getpid()));
  server_request request;
  if (std::strlen(entry_name) >= sizeof request.entry)
    throw invalid_argument(fmt::format("worker entry name \"{}\" is too long", entry_name));
  std::strcpy(request.entry, entry_name);
  request.cpu_share = cpu_share;
  request.caller = getpid();

  auto gone = [&](int code) {
    return error(fmt::format("the fork server (pid {}) is gone ({}), so start method forkserver cannot start "
                             "workers any more; use start method fork or spawn",
                             state.server_pid, code != 0 ? std::strerror(code) : "its socket was closed"));
  };
  server_reply reply;
  unique_fd relay;
  {
    std::lock_guard lock(server_mutex);
    if (!server_unusable_why.empty())
      throw error(fmt::format("the fork server (pid {}) cannot be used any more: {}; use start method fork or spawn",
                              state.server_pid, server_unusable_why));
    // Once a request went out, any failure leaves the exchange half done:
    // a reply (and a worker) may still come, and would be taken as the
    // answer to the next request. The server is then given up for good,
    // and told so (its socket shut down, it exits).
    auto give_up = [&](std::string why) {
      server_unusable_why = std::move(why);
      shutdown(state.server_fd, SHUT_RDWR);
    };
    if (!send_message(state.server_fd, &request, sizeof request, worker_fd)) {
      int const code = errno;
      give_up(fmt::format("a request could not be sent ({})", std::strerror(code)));
      if (code == EPIPE || code == ECONNRESET) throw gone(code);
      throw_errno(code, "cannot send a request to the fork server");
    }
    ssize_t received = -1;
    try {
      received = receive_message(state.server_fd, &reply, sizeof reply, relay);
    } catch (...) {
      give_up("its reply to a request could not be read (out of memory)");
      throw;
    }
    if (received != static_cast<ssize_t>(sizeof reply) || (reply.relayed != 0 && !relay)) {
      int const code = received < 0 ? errno : 0;
      give_up(received < 0 ? fmt::format("its reply to a request could not be read ({})", std::strerror(code))
              : received != static_cast<ssize_t>(sizeof reply)
                  ? fmt::format("its reply to a request was {} bytes, not {}", received, sizeof reply)
                  : std::string("its reply to a request came without the worker's relay"));
      if (received < 0 && code != ECONNRESET) throw_errno(code, "cannot read the fork server's reply");
      throw gone(code);
    }
  }
  if (reply.error == ENOENT)
    throw invalid_argument(fmt::format("the fork server knows no worker entry named \"{}\"", entry_name));
  if (reply.error != 0 || reply.pid <= 0)
    throw_errno(reply.error != 0 ? reply.error : EPROTO, "cannot start a worker process in the fork server");
  if (reply.relayed != 0) return take_relayed_child(std::move(relay), "a forkserver worker");
  return child_process(reply.pid);
}

}  // namespace detail::process

void init(int argc, char** argv) {
  using namespace detail::process;
  // Checked first without the lock: the fork server and its workers are
  // copies of the program taken while the lock was held.
  if (initialized_flag.load(std::memory_order_acquire)) return;
  std::unique_lock lock(init_mutex);
  if (initialized_flag.load(std::memory_order_relaxed)) return;
  init_record& state = record();
  state.argv0 = argc > 0 && argv != nullptr && argv[0] != nullptr ? argv[0] : "/proc/self/exe";
  if (char const* entry = std::getenv("XJOB_WORKER_ENTRY"); entry != nullptr) {
    // A spawned worker: spawn works here (argv[0] is known); forkserver
    // does not (no server of its own; state.program stays -1).
    initialized_flag.store(true, std::memory_order_release);
    lock.unlock();
    run_spawned_worker(entry);
  }
  if (int const threads = thread_count(); threads > 1)
    std::fprintf(stderr,
                 "xjob::init: %d threads are running already; forkserver workers are copies of this moment and may "
                 "hold locks those threads held: call xjob::init first in main\n",
                 threads);
  // Set before the fork: the server and the workers it clones are copies
  // of an initialised program (spawn works in them; forkserver refuses,
  // since they are not `program`).
  state.program = getpid();
  initialized_flag.store(true, std::memory_order_release);
  try {
    start_fork_server(state);
  } catch (...) {
    state.program = -1;
    initialized_flag.store(false, std::memory_order_release);
    throw;
  }
}

bool initialized() noexcept { return detail::process::initialized_flag.load(std::memory_order_acquire); }

}  // namespace xjob
