// What a backend author needs, in one place: the backend interface
// (<xjob/backend.hpp>), a call as a backend sees it (<xjob/batch_call.hpp>),
// and the pieces a backend whose workers are elsewhere handles itself,
// named here in namespace xjob:
//   xjob::task_runner    a call's tasks, type-erased: run [begin, end);
//                        save_results / load_results carry results between
//                        address spaces; save_outputs / load_outputs what
//                        tasks wrote in place, for workers that share no
//                        memory; results_in_place / outputs_in_place where
//                        those bytes lie, to move them without a copy;
//                        saving_moves_results whether saving takes them.
//   xjob::task_failure   what a failing task left (index, type, message,
//                        the exception where it ran, where it ran).
//   xjob::batch_outcome  how a batch ended: [begin, completed_end) done,
//                        and the failure of the next task if one threw.
//
// The two ways a backend runs a call:
//   - in workers that can call into the caller's batch_call (threads, or
//     processes forked from it, which share its dispatch state): each
//     worker loops on call.work(w), or on next_batch / execute_batch /
//     record_done when results must travel back (save_results in the
//     worker, load_results in the caller, then record_done);
//   - elsewhere (ranks of an MPI job, see src/mpi/mpi_backend.cc): run the
//     share of the tasks that is yours as a batch_call of its own over
//     call.runner(), fed a range at a time with batch_call::dispatch, on a
//     local backend; then bring every other worker's results and outputs in
//     through the runner and report them with call.record_done, which
//     reductions and resumable outputs rely on (a batch is reported once,
//     after its results are in place).
// A backend declares what its workers are (backend_capabilities); the
// front end decides from that, never from the backend's name.
//
// Thread-safety: as each type says; task_runner::run may be called from
// any number of threads at once, save/load for different ranges too.
//
//   #include <xjob/backend_author.hpp>
//   struct one_thread_per_worker final : xjob::backend {
//     void run(xjob::batch_call& call) override {
//       std::vector<std::jthread> workers;
//       for (int w = 1; w < call.worker_count(); ++w) workers.emplace_back([&call, w] { call.work(w); });
//       call.work(0);
//     }
//   };
#pragma once

#include <xjob/detail/config.hpp>

#include <xjob/backend.hpp>
#include <xjob/batch_call.hpp>
#include <xjob/detail/task_runner.hpp>

namespace xjob {

using task_runner = detail::task_runner;
using task_failure = detail::task_failure;
using batch_outcome = detail::batch_outcome;

}  // namespace xjob
