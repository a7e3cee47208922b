// Private to xjob::ipc: what every IPC primitive's shared memory block starts
// with (so that attach(name) can tell a queue from a lock, and a queue<int>
// from a queue<std::string>), and deadlines on the monotonic clock.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>

#include <xjob/detail/deadline.hpp>

namespace xjob::ipc {
class shared_memory;
}  // namespace xjob::ipc

namespace xjob::ipc::detail {

enum class block_kind : std::uint32_t { mutex = 1, semaphore = 2, queue = 3, pipe = 4, shared_value = 5 };

// The first bytes of a block. `magic` is written last, when the rest is ready.
struct block_header {
  std::uint64_t magic;
  block_kind kind;
  std::uint32_t version;
  std::uint64_t type_hash;  // of the value type; 0 for none
  std::uint64_t type_size;  // sizeof the value type; 0 for none
  char type_name[96];       // for error messages, truncated
};

// What follows the header starts here (a cache line, for the mutexes).
inline constexpr std::size_t block_payload_offset = 192;
static_assert(sizeof(block_header) <= block_payload_offset);

// The name of T as the compiler spells it ("int", "std::vector<double>").
template <class T>
constexpr std::string_view type_name() noexcept {
  std::string_view name = __PRETTY_FUNCTION__;
  std::size_t const first = name.find("T = ") + 4;
  std::size_t last = name.find(';', first);
  if (last == std::string_view::npos) last = name.rfind(']');
  return name.substr(first, last - first);
}

// FNV-1a of type_name<T>(): equal in every process of the same program.
template <class T>
constexpr std::uint64_t type_hash() noexcept {
  std::uint64_t hash = 14695981039346656037ull;
  for (char c : type_name<T>()) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return hash;
}

// The value type a block holds, as its header records it.
struct value_type_info {
  std::uint64_t hash = 0;
  std::uint64_t size = 0;
  std::string_view name;
};

template <class T>
constexpr value_type_info value_type_of() noexcept {
  return {type_hash<T>(), sizeof(T), type_name<T>()};
}

// Writes the header of a block this process just created, after its payload
// has been constructed.
void stamp_block(shared_memory& memory, block_kind kind, value_type_info value = {}) noexcept;

// Checks that `memory`, attached by `name`, holds a ready block of `kind`
// with at least `payload_bytes` after the header, whose values are of type
// `value`; throws xjob::invalid_argument naming `name` and what is wrong.
void check_block(shared_memory const& memory, std::string_view name, block_kind kind, std::size_t payload_bytes,
                 value_type_info value = {});

// A block's payload: where the primitive's state lives.
[[nodiscard]] std::byte* block_payload(shared_memory const& memory) noexcept;

// One deadline type for every wait of xjob (see <xjob/detail/deadline.hpp>).
using xjob::detail::deadline;
using xjob::detail::deadline_after;
using xjob::detail::to_deadline;

}  // namespace xjob::ipc::detail
