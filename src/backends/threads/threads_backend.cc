// "threads": n_jobs worker loops in a oneTBB task_arena of n_jobs slots, the
// caller's thread being one of them. TBB keeps its threads between calls, so
// a call pays a wake-up, not a thread start.
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <cstddef>
#include <memory>
#include <optional>

#include <fmt/format.h>

#include <xjob/backend.hpp>
#include <xjob/errors.hpp>


namespace xjob::detail {

namespace {

// The most workers one call may have. n_jobs above the CPU count is
// honoured (threads that wait), but each worker is a real thread with its
// own stack, and oneTBB sizes its arena and its thread table by the count:
// n_jobs=INT_MAX would ask for gigabytes before any task ran. 4096 threads
// is far past any useful oversubscription and within what Linux starts by
// default (threads-max, RLIMIT_NPROC), as oneTBB's own floor of 256 is.
constexpr int max_threads_workers = 4096;

class threads_backend final : public backend {
 public:
  explicit threads_backend(int n_jobs) : arena_(n_jobs) {}

  void run(batch_call& call) override {
    // No more workers than tasks: the others would find nothing to do, and
    // each would still be a thread to start and wake.
    int const workers = static_cast<int>(
        std::clamp<std::size_t>(call.task_count(), 1, static_cast<std::size_t>(call.worker_count())));
    // n_jobs above the CPU count is asked for on purpose (waiting-bound
    // tasks, as with joblib's threading backend): lift TBB's thread limit
    // for the call, or the arena would get only as many threads as CPUs.
    std::optional<tbb::global_control> allow_more_threads;
    if (workers > tbb::info::default_concurrency())
      allow_more_threads.emplace(tbb::global_control::max_allowed_parallelism, static_cast<std::size_t>(workers));
    arena_.execute([&call, workers] {
      tbb::task_group group;
      for (int w = 1; w < workers; ++w) group.run([&call, w] { call.work(w); });
      call.work(0);
      group.wait();
    });
  }

 private:
  tbb::task_arena arena_;
};

std::unique_ptr<backend> make_threads_backend(backend_settings const& settings) {
  if (settings.n_jobs > max_threads_workers)
    throw invalid_argument(fmt::format("n_jobs={} is more workers than backend \"threads\" can start (at most {})",
                                       settings.n_jobs, max_threads_workers));
  return std::make_unique<threads_backend>(settings.n_jobs);
}

// Registered when the library is loaded: this backend is a target of its own
// (alwayslink), which the front end's layer does not depend on.
[[maybe_unused]] bool const registered = (register_backend("threads", &make_threads_backend), true);

}  // namespace

}  // namespace xjob::detail
