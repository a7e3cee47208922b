// Small objects that forked worker processes share with the caller: a call's
// dispatch counter and stop flag live here, so a batch taken in a worker
// process is taken for everyone. Carved out of MAP_SHARED anonymous pages,
// a few dozen calls to a page, so an in-process call pays no system call
// for them.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace xjob::detail {

inline constexpr std::size_t fork_shared_slot_bytes = 256;

// A zeroed slot of fork_shared_slot_bytes, aligned to 64; never null.
// Throws std::system_error if no memory can be mapped.
[[nodiscard]] void* allocate_fork_shared_slot();
void release_fork_shared_slot(void* slot) noexcept;

// One T in a fork-shared slot. T must be usable across processes: lock-free
// atomics and plain data, no pointers to private memory.
template <class T>
class fork_shared {
  static_assert(sizeof(T) <= fork_shared_slot_bytes && alignof(T) <= 64, "too large for a fork-shared slot");
  static_assert(std::is_nothrow_destructible_v<T>);

 public:
  template <class... Args>
  explicit fork_shared(Args&&... args) : object_(new (allocate_fork_shared_slot()) T(std::forward<Args>(args)...)) {}
  fork_shared(fork_shared const&) = delete;
  fork_shared& operator=(fork_shared const&) = delete;
  ~fork_shared() {
    object_->~T();
    release_fork_shared_slot(object_);
  }

  T* operator->() const noexcept { return object_; }
  T& operator*() const noexcept { return *object_; }

 private:
  T* object_;
};

}  // namespace xjob::detail
