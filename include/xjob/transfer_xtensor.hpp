// xtensor containers (xt::xtensor, xt::xarray) as task results, pool
// arguments and IPC messages: the shape, then the elements (one block of
// bytes when they are arithmetic). Include it where such a container must
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
#include <type_traits>

#include <xtensor/xarray.hpp>
#include <xtensor/xtensor.hpp>

#include <xjob/transfer.hpp>

namespace cereal {

namespace xjob_detail {
template <class Archive, class Container>
void save_elements(Archive& archive, Container const& a) {
  using value_type = typename Container::value_type;
  if constexpr (std::is_arithmetic_v<value_type>) {
    archive(cereal::binary_data(a.data(), a.size() * sizeof(value_type)));
  } else {
    for (auto const& element : a) archive(element);
  }
}
template <class Archive, class Container>
void load_elements(Archive& archive, Container& a) {
  using value_type = typename Container::value_type;
  if constexpr (std::is_arithmetic_v<value_type>) {
    archive(cereal::binary_data(a.data(), a.size() * sizeof(value_type)));
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
