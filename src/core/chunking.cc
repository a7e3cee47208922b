#include <xjob/chunking.hpp>

#include <algorithm>

#include <fmt/format.h>

#include <xjob/detail/shape.hpp>
#include <xjob/errors.hpp>

namespace xjob {

chunk_plan::chunk_plan(std::size_t extent, std::size_t chunk_extent)
    : extent_(extent), chunk_extent_(chunk_extent), count_(0) {
  if (chunk_extent == 0) throw invalid_argument("chunk size must be at least 1, got 0");
  count_ = extent / chunk_extent + (extent % chunk_extent != 0 ? 1 : 0);
}

chunk chunk_plan::operator[](std::size_t index) const noexcept {
  std::size_t const begin = index * chunk_extent_;
  return chunk{index, begin, std::min(begin + chunk_extent_, extent_)};
}

namespace {
constexpr std::size_t target_chunk_bytes = 256 * 1024;
constexpr std::size_t min_chunks_per_worker = 4;
constexpr std::size_t cache_line_bytes = 64;
}  // namespace

std::size_t auto_chunk_extent(std::span<std::size_t const> shape, std::size_t axis, std::size_t element_bytes,
                              int workers) {
  if (axis >= shape.size())
    throw invalid_argument(fmt::format("axis {} is out of range for an array of rank {}", axis, shape.size()));
  if (element_bytes == 0) throw invalid_argument("element size must be at least 1 byte, got 0");
  std::size_t const extent = shape[axis];
  if (extent == 0) return 1;
  std::size_t const slice_bytes = std::max<std::size_t>(detail::element_count(shape) / extent * element_bytes, 1);

  std::size_t chunk = std::max<std::size_t>(target_chunk_bytes / slice_bytes, 1);
  std::size_t const wanted_chunks = min_chunks_per_worker * static_cast<std::size_t>(std::max(workers, 1));
  if (extent / chunk < wanted_chunks) chunk = std::max<std::size_t>(extent / wanted_chunks, 1);
  // Whole cache lines per chunk when a slice is a fraction of a line, so
  // neighbouring chunks written by different workers never share a line.
  if (slice_bytes < cache_line_bytes && cache_line_bytes % slice_bytes == 0) {
    std::size_t const per_line = cache_line_bytes / slice_bytes;
    if (chunk >= per_line) chunk -= chunk % per_line;
  }
  return std::min(chunk, extent);
}

}  // namespace xjob
