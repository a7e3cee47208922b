// xjob::ipc::shared_memory: a block of memory that several processes map,
// like Python's multiprocessing.shared_memory.SharedMemory, but without a
// file: nothing in /dev/shm, nothing to unlink, nothing left behind when a
// process dies, and no other user can open it.
#pragma once

#include <xjob/detail/config.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <cereal/types/string.hpp>

namespace xjob::ipc {

// A zero-filled block of `bytes` of shared memory: an anonymous memfd
// (memfd_create, MFD_CLOEXEC) mapped MAP_SHARED, alive while any process
// holds a handle to it.
//
// Crossing processes: a forked child inherits the mapping (and this handle).
// Any other process of the same user reaches it by name: name() is
// "xjob-shm:<pid>:<fd>:<inode>" (this process, the descriptor this handle
// holds, and the memfd's inode), and attach(name) opens /proc/<pid>/fd/<fd>,
// checks the inode, and maps it. So attaching by name needs the process
// whose name it is to be alive and still hold its handle; another user (or a
// process without ptrace read rights over it) cannot open it.
//
// Needs: Linux 3.17 (memfd), /proc. Throws std::system_error if memory cannot
// be created or mapped; xjob::invalid_argument for a size of 0 and for a name
// that is malformed, vanished, or another user's. Each open handle holds one
// descriptor. Move-only. Distinct handles may be used from any threads; one
// handle's const members are thread-safe, close() and moves are not.
//   xjob::ipc::shared_memory block(1 << 20);                 // zero-filled
//   std::memcpy(block.data(), "hello", 5);
//   std::string name = block.name();                          // "xjob-shm:4711:5:93842"
//   auto same = xjob::ipc::shared_memory::attach(name);        // here, or in another process
//   assert(std::memcmp(same.data(), "hello", 5) == 0);
class shared_memory {
 public:
  // An empty handle: data() is null, size() 0, name() throws xjob::error.
  shared_memory() noexcept = default;
  // A new zero-filled block of `bytes` (not 0).
  explicit shared_memory(std::size_t bytes);

  // Maps the block another handle's name() names.
  [[nodiscard]] static shared_memory attach(std::string_view name);

  shared_memory(shared_memory&& other) noexcept;
  shared_memory& operator=(shared_memory&& other) noexcept;
  shared_memory(shared_memory const&) = delete;
  shared_memory& operator=(shared_memory const&) = delete;
  ~shared_memory();

  // The name this handle can be attached by, valid while it is open. Throws
  // xjob::error on an empty handle.
  [[nodiscard]] std::string name() const;
  [[nodiscard]] std::byte* data() const noexcept { return data_; }
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool valid() const noexcept { return data_ != nullptr; }

  // Unmaps the block and closes the descriptor now (the destructor does it
  // otherwise); the handle becomes empty. Other handles are unaffected.
  void close() noexcept;

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
  int fd_ = -1;
  std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  std::uint64_t inode_ = 0;
};

}  // namespace xjob::ipc
