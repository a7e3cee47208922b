// xjob::ipc::semaphore: a counting semaphore that processes share, like
// Python's multiprocessing.Semaphore, with std::counting_semaphore's names.
#pragma once

#include <xjob/detail/config.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <xjob/ipc/detail/block.hpp>
#include <xjob/ipc/shared_memory.hpp>

namespace xjob::ipc {

// A count in its own block of shared memory: acquire() takes one (waiting
// while it is 0), release() gives some back. Built on a futex, so a process
// killed while it waits in acquire() leaves nothing behind. (A process that
// dies between acquire() and release() keeps its unit: count what the
// semaphore guards yourself if workers may die.)
//
// Crossing processes: a forked child uses the same semaphore; other processes
// attach(name()) or receive it as a task argument (cereal: it travels as its
// name), which needs the naming process to still hold it (see
// shared_memory). A default-constructed semaphore is empty: its operations
// throw xjob::error.
//
// Throws xjob::invalid_argument for a count outside [0, max()] (initial, or
// after release), std::system_error if the memory cannot be made.
// Thread-safe, except moves and assignment.
//   xjob::ipc::semaphore slots(2);                  // at most two at a time
//   slots.acquire();
//   use_the_licence();
//   slots.release();
//   bool got = slots.try_acquire_for(std::chrono::milliseconds(50));
class semaphore {
 public:
  static constexpr std::ptrdiff_t max() noexcept { return INT32_MAX; }

  semaphore() noexcept = default;
  explicit semaphore(std::ptrdiff_t initial);
  // The semaphore another handle's name() names. Throws
  // xjob::invalid_argument if the name is malformed, vanished, or names
  // another primitive.
  [[nodiscard]] static semaphore attach(std::string_view name);

  semaphore(semaphore&& other) noexcept;
  semaphore& operator=(semaphore&& other) noexcept;
  semaphore(semaphore const&) = delete;
  semaphore& operator=(semaphore const&) = delete;
  ~semaphore() = default;

  // See shared_memory::name().
  [[nodiscard]] std::string name() const;
  [[nodiscard]] bool valid() const noexcept { return state_ != nullptr; }

  // Takes one unit, waiting while there is none.
  void acquire();
  // Takes one unit if there is one now.
  [[nodiscard]] bool try_acquire();
  // Takes one unit if one comes within `timeout` (CLOCK_MONOTONIC).
  template <class Rep, class Period>
  [[nodiscard]] bool try_acquire_for(std::chrono::duration<Rep, Period> const& timeout) {
    return acquire_until(detail::deadline_after(timeout));
  }
  template <class Clock, class Duration>
  [[nodiscard]] bool try_acquire_until(std::chrono::time_point<Clock, Duration> const& when) {
    return acquire_until(detail::to_deadline(when));
  }
  // Gives back `update` units (>= 0) and wakes waiters.
  void release(std::ptrdiff_t update = 1);
  // The count now (Python's get_value); stale as soon as it returns.
  [[nodiscard]] std::ptrdiff_t value() const;

  // cereal: travels as its name, attached on arrival.
  template <class Archive>
  std::string save_minimal(Archive const&) const {
    return name();
  }
  template <class Archive>
  void load_minimal(Archive const&, std::string const& name) {
    *this = attach(name);
  }

 private:
  struct state_type;

  [[nodiscard]] bool acquire_until(std::optional<detail::deadline> until);
  [[nodiscard]] state_type& state() const;

  shared_memory memory_;
  state_type* state_ = nullptr;
};

}  // namespace xjob::ipc
