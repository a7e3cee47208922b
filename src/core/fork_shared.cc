#include <xjob/detail/fork_shared.hpp>

#include <xjob/errors.hpp>

#include <pthread.h>
#include <sys/mman.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
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

}  // namespace

bool in_worker_process() noexcept { return worker_process.load(std::memory_order_relaxed); }

void mark_as_worker_process() noexcept { worker_process.store(true, std::memory_order_relaxed); }

void* allocate_fork_shared_slot() { return slot_pool::instance().take(); }

void release_fork_shared_slot(void* slot) noexcept { slot_pool::instance().give(slot); }

}  // namespace xjob::detail
