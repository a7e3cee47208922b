#include <xjob/detail/fork_shared.hpp>

#include <xjob/errors.hpp>

#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <system_error>
#include <vector>

namespace xjob::detail {

namespace {

constexpr std::size_t page_bytes = 64 * 1024;

class slot_pool {
 public:
  static slot_pool& instance() {
    static slot_pool pool;
    return pool;
  }

  void* take() {
    std::lock_guard lock(mutex_);
    if (free_.empty()) {
      void* page = mmap(nullptr, page_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (page == MAP_FAILED) throw_errno(errno, "cannot map fork-shared memory");
      // Pages stay mapped for the life of the process (they are few: one
      // per 256 calls in flight at once).
      auto* bytes = static_cast<std::byte*>(page);
      free_.reserve(free_.size() + page_bytes / fork_shared_slot_bytes);
      for (std::size_t offset = page_bytes; offset > 0; offset -= fork_shared_slot_bytes)
        free_.push_back(bytes + offset - fork_shared_slot_bytes);
    }
    void* slot = free_.back();
    free_.pop_back();
    std::memset(slot, 0, fork_shared_slot_bytes);
    return slot;
  }

  void give(void* slot) noexcept {
    std::lock_guard lock(mutex_);
    free_.push_back(slot);  // capacity was reserved when the page was made
  }

 private:
  slot_pool() { pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child); }

  // A child shares the parent's pages: were it to hand out a slot the
  // parent also thinks free, both would use it. The child forgets the free
  // slots it inherited (they stay the parent's) and maps its own pages.
  static void before_fork() noexcept { instance().mutex_.lock(); }
  static void after_fork_in_parent() noexcept { instance().mutex_.unlock(); }
  static void after_fork_in_child() noexcept {
    slot_pool& pool = instance();
    pool.free_.clear();
    pool.mutex_.unlock();
  }

  std::mutex mutex_;
  std::vector<void*> free_;
};

std::atomic<bool> worker_process{false};

constexpr std::size_t memory_page_bytes = 4096;

void read_each_page(unsigned char const volatile* first, std::size_t bytes) noexcept {
  for (std::size_t offset = 0; offset < bytes; offset += memory_page_bytes) (void)first[offset];
  (void)first[bytes - 1];
}

// The kept mappings of a warm worker, with a bit per page: set once
// map_for_writing has mapped it. Bits are only ever set, so a page whose
// mapping the kernel dropped since (reclaim) is written through ordinary
// faults: slower, never wrong.
class kept_mappings {
 public:
  static kept_mappings& instance() {
    static kept_mappings kept;
    return kept;
  }

  void remember(void const* base, std::size_t bytes) noexcept {
    try {
      std::size_t const words = (bytes / memory_page_bytes + 64) / 64;
      auto bits = std::make_unique<std::atomic<std::uint64_t>[]>(words);
      std::unique_lock lock(mutex_);
      mappings_.push_back({static_cast<unsigned char const*>(base), bytes, std::move(bits)});
    } catch (...) {
      // Out of memory: its pages are read at every call, as elsewhere.
    }
  }

  void forget(void const* base) noexcept {
    std::unique_lock lock(mutex_);
    std::erase_if(mappings_, [&](mapping const& m) { return m.base == base; });
  }

  // Maps the pages of [first, first + bytes) not mapped before; false if
  // the range is in no kept mapping.
  bool map_for_writing(unsigned char const* first, std::size_t bytes) noexcept {
    std::shared_lock lock(mutex_);
    for (mapping const& m : mappings_) {
      if (first < m.base || first + bytes > m.base + m.bytes) continue;
      std::size_t const first_page = static_cast<std::size_t>(first - m.base) / memory_page_bytes;
      std::size_t const last_page = static_cast<std::size_t>(first + bytes - 1 - m.base) / memory_page_bytes;
      for (std::size_t page = first_page; page <= last_page;) {
        std::size_t const word = page / 64;
        std::size_t const end = std::min(last_page + 1, (word + 1) * 64);
        std::uint64_t wanted = 0;
        for (std::size_t p = page; p < end; ++p) wanted |= std::uint64_t(1) << (p % 64);
        std::uint64_t const mapped = m.bits[word].load(std::memory_order_relaxed);
        if ((mapped & wanted) != wanted) {
          for (std::size_t p = page; p < end; ++p)
            if ((mapped & (std::uint64_t(1) << (p % 64))) == 0)
              (void)*static_cast<unsigned char const volatile*>(std::max(first, m.base + p * memory_page_bytes));
          m.bits[word].fetch_or(wanted, std::memory_order_relaxed);
        }
        page = end;
      }
      return true;
    }
    return false;
  }

 private:
  kept_mappings() { pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child); }

  // A process forked from a warm worker has none of its page tables for
  // shared memory: it starts with no kept mapping.
  static void before_fork() noexcept { instance().mutex_.lock(); }
  static void after_fork_in_parent() noexcept { instance().mutex_.unlock(); }
  static void after_fork_in_child() noexcept {
    kept_mappings& kept = instance();
    kept.mappings_.clear();
    // Made anew: a pthread rwlock cannot be unlocked by another thread id,
    // and the child's one thread is not the one that locked it.
    new (&kept.mutex_) std::shared_mutex();
  }

  struct mapping {
    unsigned char const* base;
    std::size_t bytes;
    std::unique_ptr<std::atomic<std::uint64_t>[]> bits;
  };
  std::shared_mutex mutex_;
  std::vector<mapping> mappings_;
};

std::uintptr_t system_page_bytes() noexcept {
  static std::uintptr_t const bytes = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
  return bytes;
}

}  // namespace

void map_for_writing(void const* first, std::size_t bytes) noexcept {
  if (bytes == 0) return;
  auto const* byte = static_cast<unsigned char const*>(first);
  if (!kept_mappings::instance().map_for_writing(byte, bytes)) read_each_page(byte, bytes);
}

bool page_has_memory(void const* address) noexcept {
  std::uintptr_t const page = system_page_bytes();
  unsigned char resident = 0;
  auto const first = reinterpret_cast<std::uintptr_t>(address) & ~(page - 1);
  return mincore(reinterpret_cast<void*>(first), page, &resident) == 0 && (resident & 1) != 0;
}

void prepare_output_for_writing(void* first, std::size_t bytes) noexcept {
  if (bytes == 0) return;
  auto const start = reinterpret_cast<std::uintptr_t>(first);
  if (!page_has_memory(reinterpret_cast<void const*>(start + bytes / 2))) {
    auto const first_page = start & ~(system_page_bytes() - 1);
    // Fails on kernels before 5.14 (EINVAL): the writes fault, as they would.
    if (madvise(reinterpret_cast<void*>(first_page), start + bytes - first_page, MADV_POPULATE_WRITE) == 0) return;
  }
  if (in_worker_process()) map_for_writing(first, bytes);
}

void remember_kept_mapping(void const* base, std::size_t bytes) noexcept { kept_mappings::instance().remember(base, bytes); }

void forget_kept_mapping(void const* base) noexcept { kept_mappings::instance().forget(base); }

bool in_worker_process() noexcept { return worker_process.load(std::memory_order_relaxed); }

void mark_as_worker_process() noexcept { worker_process.store(true, std::memory_order_relaxed); }

void* allocate_fork_shared_slot() { return slot_pool::instance().take(); }

void release_fork_shared_slot(void* slot) noexcept { slot_pool::instance().give(slot); }

}  // namespace xjob::detail
