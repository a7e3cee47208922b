// What xjob::init() sets up for the forkserver and spawn start methods: the
// program's argv[0] (the argv of a spawned worker) and the connection to the
// fork server, a single-threaded child that init() forked while the program
// was still small and single-threaded, and that clones workers on request.
#pragma once

#include <sys/types.h>

#include "child.hpp"

namespace xjob::detail::process {

// argv[0] as init() saw it, or nullptr before init().
[[nodiscard]] char const* saved_argv0() noexcept;

// Asks the fork server to start a worker running the entry `entry_name` with
// `cpu_share` CPUs and `worker_fd` as its channel (the server receives a copy
// of the descriptor; the caller still closes its own), and returns it
// watched. The worker is a child of this process (CLONE_PARENT), or, where
// the server had to be forked with an exit signal (threads ran at init), a
// grandchild whose end its go-between relays. Thread-safe: requests are
// serialised.
// Throws xjob::invalid_argument outside the process that ran init() (a
// forked copy of it, a worker: the server would make the worker a child of
// the wrong process), xjob::error if the server is gone, std::system_error
// if it cannot clone.
[[nodiscard]] child_process start_by_fork_server(char const* entry_name, int cpu_share, int worker_fd);

}  // namespace xjob::detail::process
