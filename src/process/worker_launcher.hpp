// Starting a worker process by any start method. Whatever the method, the
// worker is watched as a child of this process (the fork server clones with
// CLONE_PARENT; a fork may go through a go-between, see child.hpp), and it
// dies with the thread that started it (fork), or with the program's main
// thread (forkserver, spawn).
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string_view>

#include <xjob/start_method.hpp>

#include "child.hpp"
#include "src/core/fd.hpp"

namespace xjob::detail::process {

// What a worker process runs, found by name so that a spawned worker (a fresh
// exec of the program) finds it too. It gets its end of the channel (a
// connected AF_UNIX SOCK_STREAM socket) and must never return: it leaves
// through _exit.
using worker_entry = void (*)(int channel_fd);

// Registers `entry` under `name` (a string literal: it is kept by pointer).
// Call during static initialisation, so that every process of the program
// has the same entries. Returns true, for `static bool const x = ...;`;
// false (and registers nothing) if the name is taken or longer than 63
// characters, or 64 entries exist already.
bool register_worker_entry(char const* name, worker_entry entry) noexcept;

struct launched_worker {
  child_process child;
  unique_fd channel;  // the caller's end
};

// Starts a worker running the entry `entry_name` with `cpu_share` CPUs for
// nested parallelism (see become_worker). Throws xjob::invalid_argument if
// the method needs xjob::init() and it did not run, or the entry is unknown;
// std::system_error if the process cannot be started.
[[nodiscard]] launched_worker launch_worker(start_method method, char const* entry_name, int cpu_share);

// The entry registered as `name`, or nullptr.
[[nodiscard]] worker_entry find_worker_entry(char const* name) noexcept;

// The worker's side, whatever the method: become_worker(owner, cpu_share)
// (exits with status 1 if the owner is already gone), then sets the signal
// mask to `mask` if given (launchers block signals across fork and clone, so
// that none runs a handler in a half-made worker), then the entry; exits
// with status 1 should the entry return.
[[noreturn]] void run_worker(worker_entry entry, int channel_fd, pid_t owner, int cpu_share,
                             sigset_t const* mask = nullptr) noexcept;

}  // namespace xjob::detail::process
