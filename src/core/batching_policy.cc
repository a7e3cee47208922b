#include <xjob/batching_policy.hpp>

#include <algorithm>

#include <fmt/format.h>

#include <xjob/errors.hpp>

namespace xjob {

batching_policy batching_policy::fixed(std::size_t size) {
  if (size == 0) throw invalid_argument("batch size must be at least 1, got 0");
  return batching_policy(size, std::chrono::nanoseconds(0), 1);
}

batching_policy batching_policy::automatic(std::chrono::nanoseconds target, int workers) {
  if (target.count() <= 0)
    throw invalid_argument(fmt::format("target batch duration must be positive, got {} ns", target.count()));
  if (workers < 1) throw invalid_argument(fmt::format("automatic batching needs at least 1 worker, got {}", workers));
  return batching_policy(0, target, static_cast<std::size_t>(workers));
}

std::size_t batching_policy::batch_size(std::size_t next, std::size_t task_count, std::size_t learned) const noexcept {
  if (next >= task_count) return 0;
  std::size_t const left = task_count - next;
  if (!is_automatic()) return std::min(fixed_size_, left);
  return std::clamp<std::size_t>(left / (2 * workers_), 1, std::max<std::size_t>(learned, 1));
}

std::size_t batching_policy::learn(std::size_t learned, std::size_t batch_tasks, std::size_t completed,
                                   std::chrono::nanoseconds took) const noexcept {
  if (!is_automatic() || completed != batch_tasks || batch_tasks == 0) return learned;
  took = std::max(took, std::chrono::nanoseconds(1));
  double const ideal =
      static_cast<double>(completed) * static_cast<double>(target_.count()) / static_cast<double>(took.count());
  double const low = std::max(1.0, static_cast<double>(learned) / 2.0);
  double const high = std::max(1.0, static_cast<double>(learned) * 2.0);
  return static_cast<std::size_t>(std::clamp(ideal, low, high));
}

}  // namespace xjob
