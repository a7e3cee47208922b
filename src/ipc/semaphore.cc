#include <xjob/ipc/semaphore.hpp>

#include <atomic>
#include <cstdint>
#include <new>
#include <utility>

#include <fmt/format.h>

#include <xjob/errors.hpp>

#include "sync.hpp"

namespace xjob::ipc {

struct semaphore::state_type {
  std::atomic<std::uint32_t> count;
  std::atomic<std::uint32_t> waiters;  // an upper bound: a dead waiter stays counted (costing a system call)
};

semaphore::semaphore(std::ptrdiff_t initial) {
  if (initial < 0 || initial > max())
    throw invalid_argument(fmt::format("xjob::ipc::semaphore: initial count {} is outside [0, {}]", initial, max()));
  memory_ = shared_memory(detail::block_payload_offset + sizeof(state_type));
  state_ = new (detail::block_payload(memory_)) state_type{};
  state_->count.store(static_cast<std::uint32_t>(initial), std::memory_order_relaxed);
  detail::stamp_block(memory_, detail::block_kind::semaphore);
}

semaphore semaphore::attach(std::string_view name) {
  shared_memory memory = shared_memory::attach(name);
  detail::check_block(memory, name, detail::block_kind::semaphore, sizeof(state_type));
  semaphore result;
  result.state_ = reinterpret_cast<state_type*>(detail::block_payload(memory));
  result.memory_ = std::move(memory);
  return result;
}

semaphore::semaphore(semaphore&& other) noexcept
    : memory_(std::move(other.memory_)), state_(std::exchange(other.state_, nullptr)) {}

semaphore& semaphore::operator=(semaphore&& other) noexcept {
  if (this != &other) {
    memory_ = std::move(other.memory_);
    state_ = std::exchange(other.state_, nullptr);
  }
  return *this;
}

std::string semaphore::name() const {
  if (state_ == nullptr) throw error("xjob::ipc::semaphore: an empty (default-constructed or moved-from) semaphore has no name");
  return memory_.name();
}

semaphore::state_type& semaphore::state() const {
  if (state_ == nullptr) throw error("xjob::ipc::semaphore: used empty (default-constructed or moved-from)");
  return *state_;
}

void semaphore::acquire() { (void)acquire_until(std::nullopt); }

bool semaphore::try_acquire() {
  state_type& s = state();
  std::uint32_t count = s.count.load(std::memory_order_relaxed);
  while (count > 0)
    if (s.count.compare_exchange_weak(count, count - 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
  return false;
}

bool semaphore::acquire_until(std::optional<detail::deadline> until) {
  state_type& s = state();
  for (;;) {
    if (try_acquire()) return true;
    if (until && std::chrono::steady_clock::now() >= *until) return false;
    // Counted as a waiter before the futex compares the count with 0: a
    // release() that came in between either sees the waiter or changed the
    // count, so the sleep ends at once (sequentially consistent both sides).
    s.waiters.fetch_add(1, std::memory_order_seq_cst);
    bool const woken = detail::futex_wait(s.count, 0, until);
    s.waiters.fetch_sub(1, std::memory_order_relaxed);
    if (!woken) return try_acquire();
  }
}

void semaphore::release(std::ptrdiff_t update) {
  state_type& s = state();
  if (update < 0) throw invalid_argument(fmt::format("xjob::ipc::semaphore: release({}) of a negative count", update));
  if (update == 0) return;
  std::uint32_t count = s.count.load(std::memory_order_relaxed);
  do {
    if (update > max() - static_cast<std::ptrdiff_t>(count))
      throw invalid_argument(
          fmt::format("xjob::ipc::semaphore: release({}) would raise the count {} above {}", update, count, max()));
  } while (!s.count.compare_exchange_weak(count, count + static_cast<std::uint32_t>(update), std::memory_order_seq_cst,
                                          std::memory_order_relaxed));
  // Every waiter, not `update` of them: one that is killed right after its
  // wake-up would otherwise leave a unit that nobody is woken for.
  if (s.waiters.load(std::memory_order_seq_cst) != 0) detail::futex_wake(s.count);
}

std::ptrdiff_t semaphore::value() const { return state().count.load(std::memory_order_relaxed); }

}  // namespace xjob::ipc
