// Shape arithmetic and checks shared by shared_array and map_chunks.
#pragma once

#include <cstddef>
#include <span>
#include <string>

namespace xjob::detail {

[[nodiscard]] std::size_t element_count(std::span<std::size_t const> shape) noexcept;
// Bytes for `shape` elements of `element_bytes`; throws xjob::invalid_argument
// if the count overflows.
[[nodiscard]] std::size_t checked_byte_count(std::span<std::size_t const> shape, std::size_t element_bytes);
// Throws xjob::invalid_argument unless `rank` equals `expected`.
void check_rank(std::size_t rank, std::size_t expected);
// "(3, 4)", as NumPy prints shapes.
[[nodiscard]] std::string format_shape(std::span<std::size_t const> shape);

}  // namespace xjob::detail
