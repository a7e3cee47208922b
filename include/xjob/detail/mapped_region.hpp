// A memory mapping that worker threads and forked worker processes all see:
// an anonymous memfd (recycled through a bounded cache, because first-touch
// page faults of fresh shared memory cost ~0.38 s per GiB here while reusing
// a mapping costs nothing), or a file whose space is reserved up front.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include <xjob/detail/task_runner.hpp>

namespace xjob::detail {

class unique_fd;  // src/core/fd.hpp: the owning descriptor of the implementation

enum class region_fill { zeroed, unspecified };
enum class region_access { read_only, read_write };

class mapped_region {
 public:
  mapped_region() noexcept = default;
  mapped_region(mapped_region&& other) noexcept;
  mapped_region& operator=(mapped_region&& other) noexcept;
  mapped_region(mapped_region const&) = delete;
  mapped_region& operator=(mapped_region const&) = delete;
  ~mapped_region();

  // `bytes` of anonymous shared memory. With region_fill::unspecified a
  // recycled mapping keeps its old contents and recycled() is true.
  // Throws std::system_error if memory cannot be created or mapped.
  [[nodiscard]] static mapped_region anonymous(std::size_t bytes, region_fill fill);

  // A new file at `final_path` holding `header` then `data_bytes` of zeros.
  // It is written under a temporary name in the same folder and renamed to
  // `final_path` by commit(); dropped uncommitted, it is deleted. Space is
  // reserved now: a full disk or /dev/shm throws std::system_error (ENOSPC)
  // here instead of a SIGBUS later.
  [[nodiscard]] static mapped_region create_file(std::filesystem::path const& final_path,
                                                 std::string const& header, std::size_t data_bytes);

  // The same at the fixed temporary name `partial_path` (replaced if it
  // exists), for a resumable output: written back to disk before this
  // returns, kept when dropped uncommitted (an unfinished output a rerun
  // resumes), and made durable by commit() before it is renamed.
  [[nodiscard]] static mapped_region create_resumable_file(std::filesystem::path const& final_path,
                                                           std::filesystem::path const& partial_path,
                                                           std::string const& header, std::size_t data_bytes);
  // An existing `partial_path` made so, mapped read-write to be finished.
  // Throws xjob::npy_error if it cannot be opened or mapped.
  [[nodiscard]] static mapped_region open_resumable_file(std::filesystem::path const& final_path,
                                                         std::filesystem::path const& partial_path);

  // Maps an existing file whole. Throws xjob::npy_error if it cannot be
  // opened or mapped.
  [[nodiscard]] static mapped_region open_file(std::filesystem::path const& path, region_access access);

  // The name another process of this user attaches the same memory by
  // (see attach), valid while this region lives: "xjob-region:<pid>:<fd>:
  // <inode>". Throws xjob::error for an empty region.
  [[nodiscard]] std::string share_name() const;

  // Maps the whole memory `name` names (a region's share_name(), in this or
  // another process), the same memory, not a copy: it opens
  // /proc/<pid>/fd/<fd> and checks the inode. Never cached: unmapped when
  // dropped. Throws xjob::invalid_argument for a malformed name, one whose
  // process is gone or no longer holds it, or another user's;
  // std::system_error if it cannot be mapped.
  [[nodiscard]] static mapped_region attach(std::string_view name, region_access access);

  [[nodiscard]] std::byte* base() const noexcept { return base_; }
  [[nodiscard]] std::size_t length() const noexcept { return length_; }
  [[nodiscard]] bool recycled() const noexcept { return recycled_; }
  [[nodiscard]] bool is_file() const noexcept { return !final_path_.empty(); }
  [[nodiscard]] bool committed() const noexcept { return committed_; }
  [[nodiscard]] std::filesystem::path const& path() const noexcept { return final_path_; }
  // Makes a created file visible under its final name (a resumable one
  // written back to disk first, and the rename too). Idempotent.
  void commit();

 private:
  // All `length` bytes of `fd` mapped shared and registered (which then
  // owns fd); on failure fd is closed and the region is empty, errno set.
  static mapped_region map_whole(unique_fd fd, std::size_t length, bool writable) noexcept;
  // Writes `header` into the new file `fd`, reserves its data and maps it.
  static mapped_region fill_new_file(unique_fd fd, std::filesystem::path const& final_path,
                                     std::filesystem::path const& partial_path, std::string const& header,
                                     std::size_t data_bytes);
  void release() noexcept;

  std::byte* base_ = nullptr;
  std::size_t length_ = 0;          // bytes in use
  std::size_t mapped_length_ = 0;   // bytes mapped (a recycled mapping may be larger)
  bool recycled_ = false;
  bool committed_ = true;
  bool attached_ = false;  // mapped by attach: another process's memory, never cached
  bool resumable_ = false;  // a resumable output's .partial: kept uncommitted, synced before its commit
  std::filesystem::path final_path_;
  std::filesystem::path partial_path_;
};

// Writes the `bytes` bytes of a file mapping from `first` back to disk and
// waits (msync MS_SYNC of the pages holding them): in any process that maps
// the file, whoever wrote them. Thread-safe. Throws std::system_error.
void write_back(void const* first, std::size_t bytes);

// Writes the entries of the folder holding `path` back to disk (a file just
// created or renamed there). Throws std::system_error if it cannot.
void sync_directory_of(std::filesystem::path const& path);

// Every mapping made here is registered with its descriptor while it is
// mapped (cached ones too), so that a worker process that started before it
// can be handed the same memory.
struct shared_mapping_location {
  shared_mapping mapping;
  std::size_t offset = 0;  // where the block starts in the mapping
};
// The registered mapping holding [first, first + bytes), if one does.
// Thread-safe.
[[nodiscard]] std::optional<shared_mapping_location> find_shared_mapping(void const* first, std::size_t bytes);

// Called with the id of each registered mapping this process unmaps
// (outside any lock, from the thread that unmaps it), so that workers can
// unmap their copies and the memory is given back. One listener; setting it
// again replaces it.
using mapping_released_listener = void (*)(std::uint64_t id) noexcept;
void set_mapping_released_listener(mapping_released_listener listener) noexcept;

// In a worker process forked from the caller, before it maps anything: unmaps
// every registered mapping it inherited (and closes their descriptors), so
// that memory the caller frees later is not kept alive by the worker.
void drop_inherited_mappings() noexcept;

// Releases every cached anonymous mapping (see xjob::trim_shared_memory_cache).
void trim_region_cache() noexcept;
// Bytes currently held by the cache.
[[nodiscard]] std::size_t region_cache_bytes() noexcept;

}  // namespace xjob::detail
