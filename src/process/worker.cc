#include <xjob/worker.hpp>

#include <atomic>

namespace xjob {

namespace {
// -1 outside worker processes. A worker sets it before any thread of its
// own starts; atomic so that threads it starts later read it race-free.
std::atomic<int> this_worker_index{-1};
}  // namespace

std::optional<int> worker_index() noexcept {
  int const index = this_worker_index.load(std::memory_order_relaxed);
  if (index < 0) return std::nullopt;
  return index;
}

namespace detail {
void set_worker_index(int index) noexcept { this_worker_index.store(index < 0 ? -1 : index, std::memory_order_relaxed); }
}  // namespace detail

}  // namespace xjob
