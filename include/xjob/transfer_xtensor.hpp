// xtensor containers (xt::xtensor, xt::xarray) as task results, pool
// arguments and IPC messages: the shape, then the elements (one block of
// bytes when they are arithmetic; for a process_pool argument of 1 MB or
// more, the name of a shared memory block holding them). Include it where such a container must
// cross a process boundary; <xjob/xjob.hpp> and <xjob/map_chunks.hpp> do.
// Needs xtensor; throws what cereal throws for a short or malformed input.
//   #include <xjob/transfer_xtensor.hpp>
//   auto rows = xjob::parallel({.n_jobs = 2, .backend = "processes"})
//       .map([](int i) { return xt::xtensor<double, 1>{double(i), 2.0 * i}; }, std::views::iota(0, 4));
#pragma once

#include <xjob/detail/config.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <type_traits>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/detail/mapped_region.hpp>
#include <xjob/detail/value_codec.hpp>
#include <xjob/errors.hpp>
#include <xjob/transfer.hpp>

namespace cereal {

namespace xjob_detail {
// Arithmetic elements: a flag, then the elements as one block of bytes
// (flag 0), or the name of a shared memory block holding them (flag 1,
// while a process_pool stages large arguments: see
// xjob::detail::staged_blocks).
template <class Archive, class Container>
void save_elements(Archive& archive, Container const& a) {
  using value_type = typename Container::value_type;
  if constexpr (std::is_arithmetic_v<value_type>) {
    std::size_t const bytes = a.size() * sizeof(value_type);
    xjob::detail::staged_blocks* const staging = xjob::detail::argument_staging;
    if (staging != nullptr && bytes >= staging->threshold) {
      auto block = std::make_shared<xjob::detail::mapped_region>(
          xjob::detail::mapped_region::anonymous(bytes, xjob::detail::region_fill::unspecified));
      std::memcpy(block->base(), a.data(), bytes);
      archive(std::uint8_t{1}, block->share_name());
      staging->keep.push_back(std::move(block));
    } else {
      archive(std::uint8_t{0});
      archive(cereal::binary_data(a.data(), bytes));
    }
  } else {
    for (auto const& element : a) archive(element);
  }
}
template <class Archive, class Container>
void load_elements(Archive& archive, Container& a) {
  using value_type = typename Container::value_type;
  if constexpr (std::is_arithmetic_v<value_type>) {
    std::size_t const bytes = a.size() * sizeof(value_type);
    std::uint8_t staged = 0;
    archive(staged);
    if (staged != 0) {
      std::string name;
      archive(name);
      auto const block = xjob::detail::mapped_region::attach(name, xjob::detail::region_access::read_only);
      if (block.length() < bytes)
        throw xjob::error("an array argument in shared memory arrived short (" + std::to_string(block.length()) +
                          " bytes for " + std::to_string(bytes) + ")");
      std::memcpy(a.data(), block.base(), bytes);
    } else {
      archive(cereal::binary_data(a.data(), bytes));
    }
  } else {
    for (auto& element : a) archive(element);
  }
}
}  // namespace xjob_detail

template <class Archive, class EC, std::size_t N, xt::layout_type L, class Tag>
void save(Archive& archive, xt::xtensor_container<EC, N, L, Tag> const& a) {
  for (std::size_t extent : a.shape()) archive(static_cast<std::uint64_t>(extent));
  xjob_detail::save_elements(archive, a);
}

template <class Archive, class EC, std::size_t N, xt::layout_type L, class Tag>
void load(Archive& archive, xt::xtensor_container<EC, N, L, Tag>& a) {
  std::array<std::size_t, N> shape{};
  for (std::size_t& extent : shape) {
    std::uint64_t value = 0;
    archive(value);
    extent = static_cast<std::size_t>(value);
  }
  a.resize(shape);
  xjob_detail::load_elements(archive, a);
}

template <class Archive, class EC, xt::layout_type L, class SC, class Tag>
void save(Archive& archive, xt::xarray_container<EC, L, SC, Tag> const& a) {
  archive(static_cast<std::uint64_t>(a.dimension()));
  for (std::size_t extent : a.shape()) archive(static_cast<std::uint64_t>(extent));
  xjob_detail::save_elements(archive, a);
}

template <class Archive, class EC, xt::layout_type L, class SC, class Tag>
void load(Archive& archive, xt::xarray_container<EC, L, SC, Tag>& a) {
  std::uint64_t rank = 0;
  archive(rank);
  SC shape;
  shape.resize(static_cast<std::size_t>(rank));
  for (auto& extent : shape) {
    std::uint64_t value = 0;
    archive(value);
    extent = static_cast<typename SC::value_type>(value);
  }
  a.resize(shape);
  xjob_detail::load_elements(archive, a);
}

}  // namespace cereal
