// How worker processes are started, as in Python's multiprocessing: chosen
// per pool or per process object (like multiprocessing.get_context), never
// process-wide, so a library cannot clash with its user's choice.
//   fork:       a copy of the caller at that moment (fast; the child holds
//               everything the caller held, including locks that other
//               threads held: xjob waits for its own threads to go idle)
//   forkserver: a copy of a single-threaded server that xjob::init() forked
//               at the top of main: no threads, no inherited locks, no large
//               memory; needs xjob::init(argc, argv)
//   spawn:      a fresh exec of the same program (the slowest; nothing is
//               inherited); needs xjob::init(argc, argv)
#pragma once

#include <xjob/detail/config.hpp>

#include <string_view>

namespace xjob {

enum class start_method { fork, forkserver, spawn };

// "fork", "forkserver", "spawn". Thread-safe; throws nothing.
//   std::string_view name = xjob::to_string(xjob::start_method::spawn);  // "spawn"
//   std::printf("started by %.*s\n", int(name.size()), name.data());
//   assert(xjob::parse_start_method(name) == xjob::start_method::spawn);
[[nodiscard]] std::string_view to_string(start_method method) noexcept;

// The method named `name`; throws xjob::invalid_argument naming it and the
// valid names otherwise. Thread-safe.
//   char const* text = std::getenv("MY_START_METHOD");
//   auto method = text ? xjob::parse_start_method(text) : xjob::start_method::fork;
//   xjob::process p(method, work, 42);
[[nodiscard]] start_method parse_start_method(std::string_view name);

}  // namespace xjob
