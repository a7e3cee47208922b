// batching_policy: how many tasks a worker takes at a time. Pure arithmetic
// with the clock passed in, so any backend can use it wherever its workers
// run (a thread, a worker process, an MPI rank) and a test can drive it with
// a made-up clock.
//   fixed(n): every batch has n tasks (the last what is left).
//   automatic(target, workers): joblib's rule per worker. Each worker learns
//     a size whose batches last about `target`, changing at most twofold per
//     batch, so one slow task cannot swing it; and no batch takes more than
//     half of a fair share of the tasks left (guided scheduling), so the
//     last batches are small and the workers finish together.
// Cheap to copy; const member functions are thread-safe.
//   xjob::batching_policy const policy = xjob::batching_policy::automatic(200us, 2);
//   std::size_t learned = 1;                                    // each worker's own
//   std::size_t const size = policy.batch_size(next, tasks, learned);
//   ... run [next, next + size) ...
//   learned = policy.learn(learned, size, size, took);          // took: that batch's duration
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <cstddef>

namespace xjob {

class batching_policy {
 public:
  // Throws xjob::invalid_argument for a size of 0.
  [[nodiscard]] static batching_policy fixed(std::size_t size);
  // Throws xjob::invalid_argument for a target that is not positive or a
  // worker count below 1.
  [[nodiscard]] static batching_policy automatic(std::chrono::nanoseconds target, int workers);

  [[nodiscard]] bool is_automatic() const noexcept { return fixed_size_ == 0; }
  // The fixed size; 0 for automatic.
  [[nodiscard]] std::size_t fixed_size() const noexcept { return fixed_size_; }
  [[nodiscard]] std::chrono::nanoseconds target() const noexcept { return target_; }

  // How many tasks the batch starting at task `next` of `task_count` takes,
  // for a worker whose learned size is `learned`: at least 1 and at most
  // what is left (0 if nothing is).
  [[nodiscard]] std::size_t batch_size(std::size_t next, std::size_t task_count,
                                       std::size_t learned) const noexcept;

  // The learned size after a batch of `batch_tasks` tasks of which
  // `completed` ran, in `took`: for a whole batch, the size that would have
  // lasted the target, within half and twice `learned` (and at least 1); a
  // partial batch (a task failed or the call stopped) or a fixed policy
  // leaves it as it was. A `took` below 1 ns counts as 1 ns.
  [[nodiscard]] std::size_t learn(std::size_t learned, std::size_t batch_tasks, std::size_t completed,
                                  std::chrono::nanoseconds took) const noexcept;

 private:
  batching_policy(std::size_t fixed_size, std::chrono::nanoseconds target, std::size_t workers) noexcept
      : fixed_size_(fixed_size), target_(target), workers_(workers) {}

  std::size_t fixed_size_ = 0;  // 0: automatic
  std::chrono::nanoseconds target_{0};
  std::size_t workers_ = 1;
};

}  // namespace xjob
