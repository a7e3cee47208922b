// xjob::init: the first line of a main() that uses the forkserver or spawn
// start methods. It starts the fork server while the program is still
// single-threaded and small, and, in a process that start_method::spawn
// started, runs the worker it was started for and never returns.
//   int main(int argc, char** argv) {
//     xjob::init(argc, argv);
//     ...
//   }
#pragma once

#include <xjob/detail/config.hpp>

namespace xjob {

// Call once, first thing in main, before any thread starts. Throws
// std::system_error if the fork server cannot be started. In a spawned
// worker it does not return (the worker exits when its work is done).
// A second call does nothing. Thread-safe, but meant for main's first line.
// The fork server is a child of the program that dies with it (and with the
// thread that called init); it leaves only through _exit. What main does
// before init runs again in every spawned worker.
//   int main(int argc, char** argv) {
//     xjob::init(argc, argv);
//     xjob::process p(xjob::start_method::forkserver, work, 1);
//     p.start();
//     p.join();
//   }
void init(int argc, char** argv);

// Whether init() ran in this program (so forkserver and spawn can work);
// true in its workers too. Thread-safe; throws nothing.
//   if (!xjob::initialized())
//     method = xjob::start_method::fork;   // forkserver and spawn need init
//   xjob::process p(method, work, 1);
[[nodiscard]] bool initialized() noexcept;

}  // namespace xjob
