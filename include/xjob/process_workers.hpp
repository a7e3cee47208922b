// The warm worker processes of the "processes" backend: started by the first
// call that can use them and kept between calls, like loky's reusable
// executor under joblib. Calls whose callable has no captures (a function, a
// captureless lambda, a captureless generic lambda for map_chunks) run on
// them; parallel objects with the same n_jobs and start method share them.
// They exit after parallel_options::idle_timeout without a call (300 s by
// default) and when the program exits; these functions let a program see
// and end them sooner.
#pragma once

#include <xjob/detail/config.hpp>

#include <vector>

namespace xjob {

// Stops every warm worker process now (each is told to quit, and killed if
// it has not within a second) and reaps it; a call running on another
// thread is waited for first. Later calls start workers again. Thread-safe;
// throws nothing. Not from inside a task of a processes call.
//   xjob::parallel({.n_jobs = 2, .backend = "processes"}).map(square, inputs);
//   xjob::release_process_workers();  // no worker process is left
void release_process_workers() noexcept;

// The pids of the warm worker processes alive now. Thread-safe (waits for
// a call in progress to end); throws std::bad_alloc only.
//   auto before = xjob::process_worker_pids();
//   par.map(square, inputs);
//   assert(xjob::process_worker_pids() == before);  // the same workers ran it
[[nodiscard]] std::vector<int> process_worker_pids();

}  // namespace xjob
