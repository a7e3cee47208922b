// Carries the results a worker process stored for a range of tasks back into
// the caller's slots (see task_runner::save_results). Slots are the R
// elements of the caller's result vector, or std::optional<R> for results
// that are written one at a time.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>

#include <fmt/format.h>

#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/transfer.hpp>

namespace xjob::detail {

template <class R, class Slot>
class result_codec {
 public:
  explicit result_codec(Slot* slots) : slots_(slots) {}

  void save(std::size_t begin, std::size_t end, std::string& bytes) const {
    if constexpr (in_process_only<R>) {
      throw error(stays_in_process());
    } else if constexpr (travels_as_bytes<R>) {
      if constexpr (std::is_same_v<Slot, R>) {
        bytes.append(reinterpret_cast<char const*>(slots_ + begin), (end - begin) * sizeof(R));
      } else {
        for (std::size_t i = begin; i < end; ++i) bytes.append(reinterpret_cast<char const*>(&*slots_[i]), sizeof(R));
      }
    } else {
      string_sink sink(bytes);
      std::ostream stream(&sink);
      cereal::BinaryOutputArchive archive(stream);
      for (std::size_t i = begin; i < end; ++i) archive(value(i));
    }
  }

  void load(std::size_t begin, std::size_t end, std::string_view bytes) {
    if constexpr (in_process_only<R>) {
      throw error(stays_in_process());
    } else if constexpr (travels_as_bytes<R>) {
      if (bytes.size() != (end - begin) * sizeof(R)) throw malformed(begin, end, bytes.size());
      if constexpr (std::is_same_v<Slot, R>) {
        std::memcpy(static_cast<void*>(slots_ + begin), bytes.data(), bytes.size());
      } else {
        std::array<std::byte, sizeof(R)> one;
        for (std::size_t i = begin; i < end; ++i) {
          std::memcpy(one.data(), bytes.data() + (i - begin) * sizeof(R), sizeof(R));
          slots_[i].emplace(std::bit_cast<R>(one));
        }
      }
    } else {
      view_source source(bytes);
      std::istream stream(&source);
      try {
        cereal::BinaryInputArchive archive(stream);
        for (std::size_t i = begin; i < end; ++i) {
          R result{};
          archive(result);
          slots_[i] = std::move(result);
        }
      } catch (cereal::Exception const&) {
        throw malformed(begin, end, bytes.size());
      }
      if (source.unread() != 0) throw malformed(begin, end, bytes.size());
    }
  }

  // The results of [begin, end) as the bytes save() would append, where
  // they lie so (numbers in the caller's vector); else empty.
  [[nodiscard]] std::span<std::byte> in_place(std::size_t begin, std::size_t end) const {
    if constexpr (!in_process_only<R> && travels_as_bytes<R> && std::is_same_v<Slot, R>) {
      return {reinterpret_cast<std::byte*>(slots_ + begin), (end - begin) * sizeof(R)};
    } else {
      return {};
    }
  }

  [[nodiscard]] std::string stays_in_process() const {
    if constexpr (in_process_only<R>)
      return fmt::format("results of type {} are declared xjob::in_process_only and cannot come back from a worker "
                         "process; use a backend that runs tasks in the caller's process",
                         typeid(R).name());
    return {};
  }

 private:
  R const& value(std::size_t i) const {
    if constexpr (std::is_same_v<Slot, R>) {
      return slots_[i];
    } else {
      return *slots_[i];
    }
  }

  static error malformed(std::size_t begin, std::size_t end, std::size_t size) {
    return error(fmt::format("the results of tasks {} to {} came back from their worker malformed ({} bytes)", begin,
                             end - 1, size));
  }

  Slot* slots_;
};

}  // namespace xjob::detail
