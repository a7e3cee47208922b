#include <xjob/detail/mapped_region.hpp>

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <string>
#include <system_error>
#include <vector>

#include <fmt/format.h>

#include <xjob/errors.hpp>
#include <xjob/shared_array.hpp>

#include "src/core/fd.hpp"

namespace xjob::detail {

namespace {

std::size_t page_size() {
  static std::size_t const size = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  return size;
}

std::size_t round_to_pages(std::size_t bytes) { return (bytes + page_size() - 1) / page_size() * page_size(); }

// Every mapping with its descriptor, and the freed anonymous mappings kept
// for reuse (small ones are not worth it: their faults are cheap and they
// would fragment the cache). One lock for both: a forked child must find
// neither held.
class region_cache {
 public:
  static constexpr std::size_t smallest_cached = std::size_t(1) << 20;

  static region_cache& instance() {
    static region_cache cache;
    return cache;
  }

  // A forked child inherits the cached MAP_SHARED mappings: were it to reuse
  // one, parent and child would write the same memory. The child therefore
  // drops its copies (unmapping them there leaves the parent's alone), and
  // the lock is held across fork so the child never inherits it locked.
  static void before_fork() noexcept { instance().mutex_.lock(); }
  static void after_fork_in_parent() noexcept { instance().mutex_.unlock(); }
  static void after_fork_in_child() noexcept {
    region_cache& cache = instance();
    for (auto const& [base, length] : cache.entries_) {
      auto const found = cache.mappings_.find(base);
      if (found != cache.mappings_.end()) {
        ::close(found->second.fd);
        cache.mappings_.erase(found);
      }
      munmap(base, length);
    }
    cache.entries_.clear();
    cache.held_ = 0;
    cache.mutex_.unlock();
  }

  // Registers a new mapping of `fd` (which the registry now owns); returns its id.
  std::uint64_t add(std::byte* base, std::size_t length, int fd, bool writable) {
    std::lock_guard lock(mutex_);
    std::uint64_t const id = ++last_id_;
    mappings_.emplace(base, shared_mapping{fd, id, length, writable});
    return id;
  }

  std::optional<shared_mapping_location> find(void const* first, std::size_t bytes) {
    auto const* byte = static_cast<std::byte const*>(first);
    std::lock_guard lock(mutex_);
    auto after = mappings_.upper_bound(const_cast<std::byte*>(byte));
    if (after == mappings_.begin()) return std::nullopt;
    auto const& [base, mapping] = *std::prev(after);
    std::size_t const offset = static_cast<std::size_t>(byte - base);
    if (offset > mapping.bytes || bytes > mapping.bytes - offset) return std::nullopt;
    return shared_mapping_location{mapping, offset};
  }

  // Unmaps a mapping, closes its descriptor and tells the listener.
  void unmap(std::byte* base, std::size_t length) noexcept {
    std::optional<shared_mapping> mapping;
    mapping_released_listener listener = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (auto const found = mappings_.find(base); found != mappings_.end()) {
        mapping = found->second;
        mappings_.erase(found);
      }
      listener = listener_;
    }
    munmap(base, length);
    if (!mapping) return;
    ::close(mapping->fd);
    if (listener != nullptr) listener(mapping->id);
  }

  void drop_all() noexcept {
    std::lock_guard lock(mutex_);
    for (auto const& [base, mapping] : mappings_) {
      munmap(base, mapping.bytes);
      ::close(mapping.fd);
    }
    mappings_.clear();
    entries_.clear();
    held_ = 0;
    listener_ = nullptr;
  }

  void set_listener(mapping_released_listener listener) noexcept {
    std::lock_guard lock(mutex_);
    listener_ = listener;
  }

  // A cached mapping of at least `bytes` and at most a quarter more.
  std::optional<std::pair<std::byte*, std::size_t>> take(std::size_t bytes) {
    if (bytes < smallest_cached) return std::nullopt;
    std::lock_guard lock(mutex_);
    auto best = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it)
      if (it->second >= bytes && it->second <= bytes + bytes / 4 && (best == entries_.end() || it->second < best->second))
        best = it;
    if (best == entries_.end()) return std::nullopt;
    auto const entry = *best;
    entries_.erase(best);
    held_ -= entry.second;
    return entry;
  }

  // Keeps the mapping if it fits under the limit; the oldest entries make
  // room. Returns false if the caller must unmap it.
  bool give(std::byte* base, std::size_t length) noexcept {
    if (length < smallest_cached || length > limit_) return false;
    std::vector<std::pair<std::byte*, std::size_t>> evicted;
    {
      std::lock_guard lock(mutex_);
      try {
        entries_.emplace_back(base, length);
      } catch (...) {
        return false;
      }
      held_ += length;
      while (held_ > limit_) {
        evicted.push_back(entries_.front());
        held_ -= entries_.front().second;
        entries_.erase(entries_.begin());
      }
    }
    for (auto const& [b, l] : evicted) unmap(b, l);
    return true;
  }

  void trim() noexcept {
    std::vector<std::pair<std::byte*, std::size_t>> all;
    {
      std::lock_guard lock(mutex_);
      all.swap(entries_);
      held_ = 0;
    }
    for (auto const& [b, l] : all) unmap(b, l);
  }

  std::size_t held() noexcept {
    std::lock_guard lock(mutex_);
    return held_;
  }

 private:
  region_cache() {
    pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);
    // Each mapping keeps its descriptor open (for warm workers), so a
    // program holding many arrays needs more than the usual soft limit of
    // 1024 descriptors: it is raised to the hard limit, as Go's runtime
    // does.
    if (rlimit limit{}; getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
      limit.rlim_cur = limit.rlim_max;
      setrlimit(RLIMIT_NOFILE, &limit);
    }
    if (char const* text = std::getenv("XJOB_SHM_CACHE_BYTES"); text != nullptr && *text != '\0') {
      limit_ = std::strtoull(text, nullptr, 10);
    } else {
      long const pages = sysconf(_SC_PHYS_PAGES);
      limit_ = pages > 0 ? static_cast<std::size_t>(pages) * page_size() / 8 : 0;
    }
  }

  std::mutex mutex_;
  std::map<std::byte*, shared_mapping> mappings_;
  std::uint64_t last_id_ = 0;
  mapping_released_listener listener_ = nullptr;
  std::vector<std::pair<std::byte*, std::size_t>> entries_;
  std::size_t held_ = 0;
  std::size_t limit_ = 0;
};

// The process umask, read without changing it (umask(2) would race with
// other threads creating files).
mode_t current_umask() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("Umask:", 0) == 0) return static_cast<mode_t>(std::strtoul(line.c_str() + 6, nullptr, 8));
  return 022;
}

// Hands `fd` to the registry; should that fail (out of memory), the mapping
// still works in this process and its workers forked per call, and only
// warm workers cannot be given it.
void register_mapping(std::byte* base, std::size_t length, unique_fd fd, bool writable) noexcept {
  try {
    (void)region_cache::instance().add(base, length, fd.get(), writable);
    (void)fd.release();  // the registry's now
  } catch (...) {
    // fd closes here.
  }
}

// Whether XJOB_HUGE_PAGES asks for huge pages ("on"); read at each array,
// so that a program (or a test) may change it between arrays.
bool huge_pages_wanted() noexcept {
  char const* text = std::getenv("XJOB_HUGE_PAGES");
  return text != nullptr && std::strcmp(text, "on") == 0;
}

// `bytes` of shared memory in the machine's reserved huge pages
// (memfd_create(MFD_HUGETLB), default huge page size), mapped: base and
// mapped length, the descriptor registered. Nothing where the pool has too
// few free pages: a MAP_SHARED hugetlb mapping reserves all its pages when
// it is made (so a later write can never find the pool empty, which would be
// a SIGBUS), and mmap fails with ENOMEM instead.
std::optional<std::pair<std::byte*, std::size_t>> map_huge_pages(std::size_t bytes) noexcept {
  unique_fd fd(move_above_stdio(memfd_create("xjob-shared-array", MFD_CLOEXEC | MFD_HUGETLB)));
  struct stat info {};
  if (!fd || fstat(fd.get(), &info) != 0 || info.st_blksize <= 0) return std::nullopt;
  auto const huge_page = static_cast<std::size_t>(info.st_blksize);  // a hugetlbfs file's block is its page
  if (bytes < huge_page) return std::nullopt;
  std::size_t const length = (bytes + huge_page - 1) / huge_page * huge_page;
  if (ftruncate(fd.get(), static_cast<off_t>(length)) != 0) return std::nullopt;
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) return std::nullopt;
  register_mapping(static_cast<std::byte*>(base), length, std::move(fd), true);
  return std::pair{static_cast<std::byte*>(base), length};
}

}  // namespace

mapped_region::mapped_region(mapped_region&& other) noexcept { *this = std::move(other); }

mapped_region& mapped_region::operator=(mapped_region&& other) noexcept {
  if (this != &other) {
    release();
    base_ = std::exchange(other.base_, nullptr);
    length_ = std::exchange(other.length_, 0);
    mapped_length_ = std::exchange(other.mapped_length_, 0);
    recycled_ = std::exchange(other.recycled_, false);
    committed_ = std::exchange(other.committed_, true);
    attached_ = std::exchange(other.attached_, false);
    resumable_ = std::exchange(other.resumable_, false);
    final_path_ = std::exchange(other.final_path_, {});
    partial_path_ = std::exchange(other.partial_path_, {});
  }
  return *this;
}

mapped_region::~mapped_region() { release(); }

void mapped_region::release() noexcept {
  if (base_ != nullptr) {
    // Files are never cached: their pages belong to the file.
    if (is_file() || attached_ || !region_cache::instance().give(base_, mapped_length_))
      region_cache::instance().unmap(base_, mapped_length_);
  }
  if (!committed_ && !partial_path_.empty() && !resumable_) {
    if (::unlink(partial_path_.c_str()) != 0 && errno != ENOENT)
      std::fprintf(stderr, "xjob: cannot delete unfinished file %s: %s\n", partial_path_.c_str(), std::strerror(errno));
  }
  base_ = nullptr;
  length_ = mapped_length_ = 0;
  committed_ = true;
  attached_ = false;
  resumable_ = false;
  partial_path_.clear();
  final_path_.clear();
}

mapped_region mapped_region::anonymous(std::size_t bytes, region_fill fill) {
  mapped_region region;
  region.length_ = bytes;
  if (auto cached = region_cache::instance().take(bytes)) {
    region.base_ = cached->first;
    region.mapped_length_ = cached->second;
    if (fill == region_fill::zeroed) std::memset(region.base_, 0, bytes);
    else region.recycled_ = true;
    return region;
  }
  if (huge_pages_wanted()) {
    if (auto huge = map_huge_pages(bytes)) {
      region.base_ = huge->first;
      region.mapped_length_ = huge->second;
      return region;
    }
  }
  // A memfd rather than a file in /dev/shm: it has no name another user
  // could open, vanishes with its last mapping (nothing to leak if the
  // process dies), and is not bound by /dev/shm's size (64 MiB in Docker).
  std::size_t const length = round_to_pages(bytes);
  unique_fd fd = create_memfd("xjob-shared-array", length);
  void* base = mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) throw_errno(errno, fmt::format("cannot map {} bytes of shared memory", length));
  region.base_ = static_cast<std::byte*>(base);
  region.mapped_length_ = length;
  // The descriptor stays open with the mapping, for workers that started
  // before it (see find_shared_mapping).
  register_mapping(region.base_, length, std::move(fd), true);
  return region;
}

mapped_region mapped_region::create_file(std::filesystem::path const& final_path, std::string const& header,
                                         std::size_t data_bytes) {
  std::string partial = final_path.string() + ".XXXXXX.partial";
  unique_fd fd(move_above_stdio(mkostemps(partial.data(), 8, O_CLOEXEC)));
  if (!fd) throw_errno(errno, fmt::format("cannot create {}", partial));
  return fill_new_file(std::move(fd), final_path, partial, header, data_bytes);
}

mapped_region mapped_region::create_resumable_file(std::filesystem::path const& final_path,
                                                   std::filesystem::path const& partial_path,
                                                   std::string const& header, std::size_t data_bytes) {
  unique_fd fd(move_above_stdio(::open(partial_path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0666)));
  if (!fd) throw_errno(errno, fmt::format("cannot create {}", partial_path.string()));
  mapped_region region = fill_new_file(std::move(fd), final_path, partial_path, header, data_bytes);
  region.resumable_ = true;
  // The header, the size and the reserved blocks on disk before any chunk
  // is journaled (msync MS_SYNC is an fdatasync of the range: the data and
  // the metadata needed to read them).
  write_back(region.base_, region.length_);
  return region;
}

mapped_region mapped_region::fill_new_file(unique_fd fd, std::filesystem::path const& final_path,
                                           std::filesystem::path const& partial_path, std::string const& header,
                                           std::size_t data_bytes) {
  std::string const partial = partial_path.string();
  mapped_region region;
  region.final_path_ = final_path;
  region.partial_path_ = partial_path;
  region.committed_ = false;  // from here on, release() deletes the file
  // mkostemps makes 0600 files; give the result the mode open(2) would.
  if (fchmod(fd.get(), 0666 & ~current_umask()) != 0) throw_errno(errno, fmt::format("cannot set the mode of {}", partial));
  std::size_t const total = header.size() + data_bytes;
  // Reserve every block now: writing through a mapping into a file that
  // cannot grow would be a SIGBUS, far from here and with nothing to say.
  if (int const code = posix_fallocate(fd.get(), 0, static_cast<off_t>(total)); code != 0)
    throw_errno(code, fmt::format("cannot reserve {} bytes for {}", total, final_path.string()));
  write_all_at(fd.get(), header.data(), header.size(), 0, fmt::format("cannot write the header of {}", partial));
  void* base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) throw_errno(errno, fmt::format("cannot map {}", partial));
  region.base_ = static_cast<std::byte*>(base);
  region.length_ = region.mapped_length_ = total;
  register_mapping(region.base_, total, std::move(fd), true);
  return region;
}

mapped_region mapped_region::open_resumable_file(std::filesystem::path const& final_path,
                                                 std::filesystem::path const& partial_path) {
  mapped_region region = open_file(partial_path, region_access::read_write);
  region.final_path_ = final_path;
  region.partial_path_ = partial_path;
  region.committed_ = false;
  region.resumable_ = true;
  return region;
}

mapped_region mapped_region::open_file(std::filesystem::path const& path, region_access access) {
  bool const writable = access == region_access::read_write;
  unique_fd fd(move_above_stdio(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)));
  if (!fd) throw npy_error(path, "cannot open", std::error_code(errno, std::generic_category()));
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) throw npy_error(path, "cannot stat", std::error_code(errno, std::generic_category()));
  if (!S_ISREG(info.st_mode) || info.st_size == 0)
    throw npy_error(path, info.st_size == 0 ? "the file is empty, not a .npy file" : "not a regular file");
  mapped_region region = map_whole(std::move(fd), static_cast<std::size_t>(info.st_size), writable);
  if (region.base_ == nullptr) throw npy_error(path, "cannot map", std::error_code(errno, std::generic_category()));
  region.final_path_ = path;
  return region;
}

mapped_region mapped_region::map_whole(unique_fd fd, std::size_t length, bool writable) noexcept {
  mapped_region region;
  void* base = mmap(nullptr, length, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) {
    int const code = errno;
    fd.reset();
    errno = code;
    return region;
  }
  region.base_ = static_cast<std::byte*>(base);
  region.length_ = region.mapped_length_ = length;
  register_mapping(region.base_, length, std::move(fd), writable);
  return region;
}

std::string mapped_region::share_name() const {
  std::optional<shared_mapping_location> const where = base_ != nullptr ? find_shared_mapping(base_, length_) : std::nullopt;
  if (!where) throw error("an empty shared array (or one without a descriptor) has no name to be attached by");
  struct stat info {};
  if (fstat(where->mapping.fd, &info) != 0) throw_errno(errno, "cannot stat the memory of a shared array");
  return fmt::format("xjob-region:{}:{}:{}", getpid(), where->mapping.fd, static_cast<std::uint64_t>(info.st_ino));
}

mapped_region mapped_region::attach(std::string_view name, region_access access) {
  auto fail = [&](std::string const& why) {
    return invalid_argument(fmt::format("cannot attach the shared array \"{}\": {}", name, why));
  };
  long pid = 0;
  int fd_number = -1;
  unsigned long long inode = 0;
  std::string const text(name);
  int consumed = 0;
  if (std::sscanf(text.c_str(), "xjob-region:%ld:%d:%llu%n", &pid, &fd_number, &inode, &consumed) != 3 ||
      static_cast<std::size_t>(consumed) != text.size() || pid <= 0 || fd_number < 0)
    throw fail("not a name of the form xjob-region:<pid>:<fd>:<inode>");
  bool const writable = access == region_access::read_write;
  std::string const path = fmt::format("/proc/{}/fd/{}", pid, fd_number);
  unique_fd fd(move_above_stdio(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)));
  if (!fd) {
    int const code = errno;
    if (code == ENOENT)
      throw fail(fmt::format("process {} is gone or no longer holds it (no {}); a shared array travels by name, so "
                             "the process that holds it must keep it until it is attached",
                             pid, path));
    throw fail(fmt::format("{}: {}", path, std::strerror(code)));
  }
  struct stat info {};
  if (fstat(fd.get(), &info) != 0 || info.st_ino != inode || !S_ISREG(info.st_mode) || info.st_size <= 0) {
    throw fail(fmt::format("descriptor {} of process {} is another file now (the array it named was freed)",
                           fd_number, pid));
  }
  auto const length = static_cast<std::size_t>(info.st_size);
  mapped_region region = map_whole(std::move(fd), length, writable);
  if (region.base_ == nullptr) throw_errno(errno, fmt::format("cannot map {} bytes of an attached shared array", length));
  region.attached_ = true;
  return region;
}

void mapped_region::commit() {
  if (committed_) return;
  if (resumable_) {
    // Durable before it is complete: a power cut after the rename must
    // not leave a complete-looking file with data that never reached disk.
    write_back(base_, length_);
  }
  if (::rename(partial_path_.c_str(), final_path_.c_str()) != 0)
    throw_errno(errno, fmt::format("cannot rename {} to {}", partial_path_.string(), final_path_.string()));
  if (resumable_) sync_directory_of(final_path_);
  committed_ = true;
  partial_path_.clear();
}

void write_back(void const* first, std::size_t bytes) {
  if (bytes == 0) return;
  auto const begin = reinterpret_cast<std::uintptr_t>(first) / page_size() * page_size();
  auto const end = reinterpret_cast<std::uintptr_t>(first) + bytes;
  if (msync(reinterpret_cast<void*>(begin), end - begin, MS_SYNC) != 0)
    throw_errno(errno, fmt::format("cannot write {} bytes of a file back to disk", bytes));
}

void sync_directory_of(std::filesystem::path const& path) {
  std::filesystem::path const folder = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  unique_fd fd(move_above_stdio(::open(folder.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)));
  if (!fd || fsync(fd.get()) != 0)
    throw_errno(errno, fmt::format("cannot write the folder {} back to disk", folder.string()));
}

std::optional<shared_mapping_location> find_shared_mapping(void const* first, std::size_t bytes) {
  return region_cache::instance().find(first, bytes);
}

void set_mapping_released_listener(mapping_released_listener listener) noexcept {
  region_cache::instance().set_listener(listener);
}

void drop_inherited_mappings() noexcept { region_cache::instance().drop_all(); }

void trim_region_cache() noexcept { region_cache::instance().trim(); }
std::size_t region_cache_bytes() noexcept { return region_cache::instance().held(); }

}  // namespace xjob::detail

namespace xjob {
void trim_shared_memory_cache() noexcept { detail::trim_region_cache(); }
std::size_t shared_memory_cache_bytes() noexcept { return detail::region_cache_bytes(); }
}  // namespace xjob
