// "threads": n_jobs worker loops in a oneTBB task_arena of n_jobs slots, the
// caller's thread being one of them. TBB keeps its threads between calls, so
// a call pays a wake-up, not a thread start.
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/info.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <memory>
#include <optional>

#include <xjob/backend.hpp>


namespace xjob::detail {

namespace {
class threads_backend final : public backend {
 public:
  explicit threads_backend(int n_jobs) : arena_(n_jobs) {}

  void run(batch_call& call) override {
    int const workers = call.worker_count();
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
  return std::make_unique<threads_backend>(settings.n_jobs);
}

// Registered when the library is loaded: this backend is a target of its own
// (alwayslink), which the front end's layer does not depend on.
[[maybe_unused]] bool const registered = (register_backend("threads", &make_threads_backend), true);

}  // namespace

}  // namespace xjob::detail
