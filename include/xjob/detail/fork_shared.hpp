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

// True in a worker process of the "processes" backend. Its page tables for
// shared memory start empty (fork copies none), so every page of an array
// faults on first use; code that writes large arrays maps them in bulk
// first (see map_for_writing).
[[nodiscard]] bool in_worker_process() noexcept;
void mark_as_worker_process() noexcept;

// Maps [first, first + bytes) of a shared mapping for writing at a
// sixteenth of the cost of letting each store fault: one read per page, so
// the kernel maps each fault's neighbours too (fault-around, 64 KiB), and
// writable, since shared memory needs no dirty tracking. A write fault maps
// one page; this is what makes a worker's writes into a 1 GiB output cost
// 0.06 s of faults instead of 0.6 s. Pages of a kept mapping (below) that
// were mapped so once are not read again: each read is a miss to memory,
// 3-4% of a memory-bound map whose output is mapped already.
// Thread-safe.
void map_for_writing(void const* first, std::size_t bytes) noexcept;

// Readies [first, first + bytes) of a shared mapping (shared memory or a
// file) for an output chunk's writes. Where the range's middle page has no
// memory yet (mincore: nobody has written there, a new output), its pages
// are made and mapped writable in one system call (MADV_POPULATE_WRITE):
// a first write to fresh shared memory otherwise faults once per 4 KiB
// page, and each such fault costs more than one on private memory (the
// page cache, not the process, holds the page), which made a cold 1 GiB
// output 0.67x raw oneTBB into fresh malloc memory. Elsewhere, in a worker
// process, map_for_writing; in the caller nothing (its page tables are
// there). Never changes the memory's contents. Thread-safe.
void prepare_output_for_writing(void* first, std::size_t bytes) noexcept;

// Whether the page holding `address` has memory yet (mincore; a mapping of
// shared memory or a file sees the page cache): false where nobody has
// written, and for an address that is not mapped.
[[nodiscard]] bool page_has_memory(void const* address) noexcept;

// A mapping a warm worker keeps across calls: map_for_writing records
// which of its pages it mapped, and reads each only once. Called by the
// worker's own loop between calls. Without memory for its record, a
// mapping's pages are read at every call, as elsewhere.
void remember_kept_mapping(void const* base, std::size_t bytes) noexcept;
void forget_kept_mapping(void const* base) noexcept;

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
