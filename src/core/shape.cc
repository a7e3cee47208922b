#include <xjob/detail/shape.hpp>

#include <limits>

#include <fmt/format.h>

#include <xjob/errors.hpp>

namespace xjob::detail {

std::size_t element_count(std::span<std::size_t const> shape) noexcept {
  std::size_t count = 1;
  for (std::size_t extent : shape) count *= extent;
  return count;
}

std::size_t checked_byte_count(std::span<std::size_t const> shape, std::size_t element_bytes) {
  std::size_t bytes = element_bytes;
  for (std::size_t extent : shape) {
    if (extent != 0 && bytes > std::numeric_limits<std::size_t>::max() / extent)
      throw invalid_argument(fmt::format("shape {} is too large: its byte count overflows", format_shape(shape)));
    bytes *= extent;
  }
  return bytes;
}

void check_rank(std::size_t rank, std::size_t expected) {
  if (rank != expected)
    throw invalid_argument(fmt::format("the array has rank {}, not the rank {} asked for", rank, expected));
}

std::string format_shape(std::span<std::size_t const> shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

}  // namespace xjob::detail
