// Values as bytes, for everything that crosses a process boundary: results of
// worker processes, arguments of a persistent pool's tasks, messages on IPC
// queues and pipes. Trivially copyable types travel as their bytes; the rest
// through cereal's binary archive (see xjob/transfer.hpp for what qualifies).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <cstddef>
#include <cstring>
#include <memory>
#include <istream>
#include <ostream>
#include <streambuf>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include <xjob/errors.hpp>
#include <xjob/transfer.hpp>

namespace xjob::detail {

// Large array arguments through shared memory, as joblib's max_nbytes: while
// a process_pool encodes a task's arguments it sets `argument_staging` (this
// thread's) to its own, and an xtensor container of at least `threshold`
// bytes puts its elements into a shared memory block of its own, travels by
// that block's name and is copied out on arrival, instead of travelling
// inside the message (see <xjob/transfer_xtensor.hpp>). `keep` holds the
// blocks until the task is done.
struct staged_blocks {
  std::size_t threshold = std::size_t(1) << 20;
  std::vector<std::shared_ptr<void const>> keep;
};
inline thread_local staged_blocks* argument_staging = nullptr;

// Sets `argument_staging` for a scope.
class staging_scope {
 public:
  explicit staging_scope(staged_blocks& blocks) noexcept : previous_(std::exchange(argument_staging, &blocks)) {}
  ~staging_scope() { argument_staging = previous_; }
  staging_scope(staging_scope const&) = delete;
  staging_scope& operator=(staging_scope const&) = delete;

 private:
  staged_blocks* previous_;
};

// A std::streambuf appending to a std::string, for cereal's output archive.
class string_sink final : public std::streambuf {
 public:
  explicit string_sink(std::string& bytes) : bytes_(bytes) {}

 protected:
  std::streamsize xsputn(char const* data, std::streamsize count) override {
    bytes_.append(data, static_cast<std::size_t>(count));
    return count;
  }
  int_type overflow(int_type c) override {
    if (!traits_type::eq_int_type(c, traits_type::eof())) bytes_.push_back(traits_type::to_char_type(c));
    return traits_type::not_eof(c);
  }

 private:
  std::string& bytes_;
};

// A std::streambuf reading a string_view, for cereal's input archive.
class view_source final : public std::streambuf {
 public:
  explicit view_source(std::string_view bytes) {
    // The get area is only read; streambuf's interface wants char*.
    char* first = const_cast<char*>(bytes.data());
    setg(first, first, first + bytes.size());
  }
  [[nodiscard]] std::size_t unread() const noexcept { return static_cast<std::size_t>(egptr() - gptr()); }
};

// Appends the encoding of each of `values` to `bytes`, in order.
template <transferable... T>
void encode_values(std::string& bytes, T const&... values) {
  if constexpr ((travels_as_bytes<T> && ...)) {
    (bytes.append(reinterpret_cast<char const*>(&values), sizeof(T)), ...);
  } else {
    string_sink sink(bytes);
    std::ostream stream(&sink);
    cereal::BinaryOutputArchive archive(stream);
    auto one = [&](auto const& value) {
      if constexpr (travels_as_bytes<std::remove_cvref_t<decltype(value)>>) {
        archive(cereal::binary_data(&value, sizeof value));
      } else {
        archive(value);
      }
    };
    (one(values), ...);
  }
}

// Decodes exactly `values` from `bytes`; throws xjob::error naming `what`
// if the bytes do not hold them (too few, too many, or malformed).
template <transferable... T>
void decode_values(std::string_view bytes, std::string_view what, T&... values) {
  auto malformed = [&] {
    return error(fmt::format("{} arrived malformed ({} bytes)", what, bytes.size()));
  };
  if constexpr ((travels_as_bytes<T> && ...)) {
    if (bytes.size() != (sizeof(T) + ... + 0)) throw malformed();
    std::size_t at = 0;
    auto one = [&](auto& value) {
      std::memcpy(static_cast<void*>(&value), bytes.data() + at, sizeof value);
      at += sizeof value;
    };
    (one(values), ...);
  } else {
    view_source source(bytes);
    std::istream stream(&source);
    try {
      cereal::BinaryInputArchive archive(stream);
      auto one = [&](auto& value) {
        if constexpr (travels_as_bytes<std::remove_cvref_t<decltype(value)>>) {
          archive(cereal::binary_data(&value, sizeof value));
        } else {
          archive(value);
        }
      };
      (one(values), ...);
    } catch (cereal::Exception const&) {
      throw malformed();
    }
    if (source.unread() != 0) throw malformed();
  }
}

// One value as a fresh string, and back.
template <transferable T>
[[nodiscard]] std::string encode_value(T const& value) {
  std::string bytes;
  encode_values(bytes, value);
  return bytes;
}

template <transferable T>
[[nodiscard]] T decode_value(std::string_view bytes, std::string_view what) {
  if constexpr (travels_as_bytes<T> && !std::is_default_constructible_v<T>) {
    std::array<std::byte, sizeof(T)> raw;
    if (bytes.size() != sizeof(T)) throw error(fmt::format("{} arrived malformed ({} bytes)", what, bytes.size()));
    std::memcpy(raw.data(), bytes.data(), sizeof(T));
    return std::bit_cast<T>(raw);
  } else {
    T value{};
    decode_values(bytes, what, value);
    return value;
  }
}

// Appends the encodings of the elements of `values` (a sized range of T),
// in order; the count is not written.
template <transferable T, class Range>
void encode_sequence(std::string& bytes, Range const& values) {
  if constexpr (travels_as_bytes<T>) {
    for (T const value : values) bytes.append(reinterpret_cast<char const*>(&value), sizeof(T));
  } else {
    string_sink sink(bytes);
    std::ostream stream(&sink);
    cereal::BinaryOutputArchive archive(stream);
    for (T const& value : values) archive(value);
  }
}

// Decodes exactly `count` values of T written by encode_sequence.
template <transferable T>
[[nodiscard]] std::vector<T> decode_sequence(std::string_view bytes, std::size_t count, std::string_view what) {
  // The count is checked against the bytes before memory is reserved for
  // it: a malformed count must not become a huge allocation.
  std::vector<T> values;
  if constexpr (travels_as_bytes<T>) {
    if (count > bytes.size() / sizeof(T) || bytes.size() != count * sizeof(T))
      throw error(fmt::format("{} arrived malformed ({} bytes for {} values)", what, bytes.size(), count));
    values.reserve(count);
    for (std::size_t i = 0; i < count; ++i) values.push_back(decode_value<T>(bytes.substr(i * sizeof(T), sizeof(T)), what));
  } else {
    values.reserve(std::min(count, bytes.size()));  // most values take a byte or more
    view_source source(bytes);
    std::istream stream(&source);
    try {
      cereal::BinaryInputArchive archive(stream);
      for (std::size_t i = 0; i < count; ++i) {
        T value{};
        archive(value);
        values.push_back(std::move(value));
      }
    } catch (cereal::Exception const&) {
      throw error(fmt::format("{} arrived malformed ({} bytes for {} values)", what, bytes.size(), count));
    }
    if (source.unread() != 0)
      throw error(fmt::format("{} arrived malformed ({} bytes for {} values)", what, bytes.size(), count));
  }
  return values;
}

}  // namespace xjob::detail
