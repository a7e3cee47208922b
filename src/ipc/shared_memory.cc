#include <xjob/ipc/shared_memory.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/format.h>

#include <xjob/errors.hpp>
#include <xjob/ipc/detail/block.hpp>

#include "src/core/fd.hpp"

namespace xjob::ipc {

namespace {

using xjob::detail::move_above_stdio;
using xjob::detail::throw_errno;
using xjob::detail::unique_fd;

constexpr std::string_view name_prefix = "xjob-shm:";
// The memfd's own name, as /proc/<pid>/fd/<fd> shows it: "/memfd:xjob-shm (deleted)".
constexpr char const* memfd_name = "xjob-shm";

// Parses "xjob-shm:<pid>:<fd>:<inode>"; false if malformed.
bool parse_name(std::string_view name, long& pid, int& fd, std::uint64_t& inode) {
  if (!name.starts_with(name_prefix)) return false;
  char const* at = name.data() + name_prefix.size();
  char const* const end = name.data() + name.size();
  auto number = [&](auto& value, bool last) {
    auto [next, ec] = std::from_chars(at, end, value);
    if (ec != std::errc() || next == at) return false;
    at = next;
    if (last) return at == end;
    if (at == end || *at != ':') return false;
    ++at;
    return true;
  };
  return number(pid, false) && number(fd, false) && number(inode, true) && pid > 0 && fd >= 0;
}

}  // namespace

shared_memory::shared_memory(std::size_t bytes) {
  if (bytes == 0) throw invalid_argument("xjob::ipc::shared_memory: a block of 0 bytes");
  unique_fd fd = xjob::detail::create_memfd(memfd_name, bytes);
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) throw_errno(errno, "cannot stat shared memory");
  void* const base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) throw_errno(errno, fmt::format("cannot map {} bytes of shared memory", bytes));
  data_ = static_cast<std::byte*>(base);
  size_ = bytes;
  inode_ = info.st_ino;
  fd_ = fd.release();
}

shared_memory shared_memory::attach(std::string_view name) {
  long pid = 0;
  int fd_number = -1;
  std::uint64_t inode = 0;
  auto fail = [&](std::string const& why) {
    return invalid_argument(fmt::format("cannot attach shared memory \"{}\": {}", name, why));
  };
  if (!parse_name(name, pid, fd_number, inode))
    throw fail("not a name of the form xjob-shm:<pid>:<fd>:<inode>");
  std::string const path = fmt::format("/proc/{}/fd/{}", pid, fd_number);
  unique_fd fd(move_above_stdio(::open(path.c_str(), O_RDWR | O_CLOEXEC)));
  if (!fd) {
    int const code = errno;
    if (code == ENOENT)
      throw fail(fmt::format("process {} does not exist or no longer holds it (no {})", pid, path));
    if (code == EACCES || code == EPERM)
      throw fail(fmt::format("process {} belongs to another user or may not be inspected ({}: {})", pid, path,
                             std::strerror(code)));
    throw fail(fmt::format("{}: {}", path, std::strerror(code)));
  }
  struct stat info {};
  if (fstat(fd.get(), &info) != 0) throw_errno(errno, "cannot stat attached shared memory");
  // The link text is checked on our own descriptor, so it names what we opened.
  char link[64] = {};
  std::string const own = fmt::format("/proc/self/fd/{}", fd.get());
  ssize_t const length = readlink(own.c_str(), link, sizeof link - 1);
  std::string_view const target(link, length > 0 ? static_cast<std::size_t>(length) : 0);
  if (info.st_ino != inode || !S_ISREG(info.st_mode) || !target.starts_with(std::string("/memfd:") + memfd_name))
    throw fail(fmt::format("descriptor {} of process {} is another file now (the block it named was closed)",
                           fd_number, pid));
  if (info.st_size <= 0) throw fail("the block is empty");
  auto const bytes = static_cast<std::size_t>(info.st_size);
  void* const base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
  if (base == MAP_FAILED) throw_errno(errno, fmt::format("cannot map {} bytes of attached shared memory", bytes));
  shared_memory memory;
  memory.data_ = static_cast<std::byte*>(base);
  memory.size_ = bytes;
  memory.inode_ = inode;
  memory.fd_ = fd.release();
  return memory;
}

shared_memory::shared_memory(shared_memory&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      inode_(std::exchange(other.inode_, 0)) {}

shared_memory& shared_memory::operator=(shared_memory&& other) noexcept {
  if (this != &other) {
    close();
    fd_ = std::exchange(other.fd_, -1);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    inode_ = std::exchange(other.inode_, 0);
  }
  return *this;
}

shared_memory::~shared_memory() { close(); }

std::string shared_memory::name() const {
  if (fd_ < 0) throw error("xjob::ipc::shared_memory: an empty (closed or moved-from) handle has no name");
  return fmt::format("{}{}:{}:{}", name_prefix, getpid(), fd_, inode_);
}

void shared_memory::close() noexcept {
  if (data_ != nullptr) munmap(data_, size_);
  if (fd_ >= 0) ::close(fd_);
  data_ = nullptr;
  size_ = 0;
  fd_ = -1;
  inode_ = 0;
}

namespace detail {

namespace {
constexpr std::uint64_t block_magic = 0x6370692d626f6a78;  // "xjob-ipc", little-endian
constexpr std::uint32_t block_version = 1;

std::string_view kind_name(block_kind kind) {
  switch (kind) {
    case block_kind::mutex: return "xjob::ipc::mutex";
    case block_kind::semaphore: return "xjob::ipc::semaphore";
    case block_kind::queue: return "xjob::ipc::queue";
    case block_kind::pipe: return "xjob::ipc::connection (a pipe)";
    case block_kind::shared_value: return "xjob::ipc::shared_value";
  }
  return "an unknown primitive";
}

std::atomic_ref<std::uint64_t> magic_of(block_header& header) noexcept { return std::atomic_ref(header.magic); }
}  // namespace

void stamp_block(shared_memory& memory, block_kind kind, value_type_info value) noexcept {
  auto& header = *reinterpret_cast<block_header*>(memory.data());
  header.kind = kind;
  header.version = block_version;
  header.type_hash = value.hash;
  header.type_size = value.size;
  std::size_t const n = std::min(value.name.size(), sizeof header.type_name - 1);
  std::copy_n(value.name.begin(), n, header.type_name);
  header.type_name[n] = '\0';
  magic_of(header).store(block_magic, std::memory_order_release);
}

void check_block(shared_memory const& memory, std::string_view name, block_kind kind, std::size_t payload_bytes,
                 value_type_info value) {
  auto fail = [&](std::string const& why) {
    return invalid_argument(fmt::format("cannot attach {} \"{}\": {}", kind_name(kind), name, why));
  };
  if (memory.size() < block_payload_offset) throw fail("the block is too small to be one");
  auto& header = *reinterpret_cast<block_header*>(memory.data());
  if (magic_of(header).load(std::memory_order_acquire) != block_magic || header.version != block_version)
    throw fail("the block is not an xjob::ipc primitive (or not made by this version of xjob)");
  if (header.kind != kind) throw fail(fmt::format("it names an {}", kind_name(header.kind)));
  if (header.type_hash != value.hash || header.type_size != value.size) {
    std::string_view const held(header.type_name, strnlen(header.type_name, sizeof header.type_name));
    throw fail(fmt::format("it holds values of type {}, not {}", held, value.name));
  }
  if (memory.size() - block_payload_offset < payload_bytes)
    throw fail(fmt::format("the block has {} bytes, fewer than its header promises", memory.size()));
}

std::byte* block_payload(shared_memory const& memory) noexcept { return memory.data() + block_payload_offset; }

}  // namespace detail

}  // namespace xjob::ipc
