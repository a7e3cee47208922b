// Chunk plans: how map_chunks cuts an array along one axis. Pure arithmetic,
// no I/O. Every chunk but the last has exactly `chunk_extent` slices along the
// axis; the last has the rest. Chunks are disjoint, in order, and cover the
// extent exactly once.
#pragma once

#include <xjob/detail/config.hpp>

#include <cstddef>
#include <optional>
#include <span>

namespace xjob {

// How to chunk an array in one map_chunks call.
//   par.map_chunks(x, f, xjob::chunking{.axis = 1, .size = 64});
struct chunking {
  std::size_t axis = 0;
  // Slices along `axis` per chunk; unset: automatic (auto_chunk_extent).
  std::optional<std::size_t> size = std::nullopt;
};

// One chunk: the half-open range [begin, end) along the chunked axis.
struct chunk {
  std::size_t index = 0;
  std::size_t begin = 0;
  std::size_t end = 0;
  [[nodiscard]] std::size_t extent() const noexcept { return end - begin; }
  friend bool operator==(chunk const&, chunk const&) = default;
};

// Where a chunk of a map_chunks call lies, for an f that takes it as a third
// parameter, f(in, out, info) (Dask's block_info): to key a random stream by
// a row's position in the whole array, say.
//   par.map_chunks(x, [](auto const& in, auto&& out, xjob::chunk_info const& c) {
//     out = in + static_cast<double>(c.offset);   // c.offset + r: row r's index in x
//   }, y);
struct chunk_info {
  std::size_t index = 0;   // the chunk's position in the call: 0, 1, ...
  std::size_t offset = 0;  // its first slice along the chunked axis
  std::size_t extent = 0;  // its slices along that axis
  std::size_t axis = 0;    // the chunked axis
  friend bool operator==(chunk_info const&, chunk_info const&) = default;
};

// The chunks of an extent. Throws xjob::invalid_argument for a chunk extent
// of 0. Cheap to copy; thread-safe.
//   xjob::chunk_plan plan(10, 4);     // [0,4) [4,8) [8,10)
//   for (std::size_t i = 0; i < plan.size(); ++i) use(plan[i]);
class chunk_plan {
 public:
  chunk_plan(std::size_t extent, std::size_t chunk_extent);

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] std::size_t extent() const noexcept { return extent_; }
  [[nodiscard]] std::size_t chunk_extent() const noexcept { return chunk_extent_; }
  [[nodiscard]] chunk operator[](std::size_t index) const noexcept;

 private:
  std::size_t extent_;
  std::size_t chunk_extent_;
  std::size_t count_;
};

// The automatic chunk extent for an array of `shape`, cut along `axis`, with
// elements of `element_bytes`, run on `workers` workers. It aims for chunks
// of about 256 KiB of input: small enough that a chunk's input and output
// stay in a core's L2 cache, large enough that the few hundred nanoseconds of
// taking a chunk are under 1% of its time at memory speed. When that would
// give fewer than 4 chunks per worker, chunks shrink (never below one slice)
// so the load still balances. Where it costs nothing, the extent is rounded
// to keep chunk boundaries on 64-byte cache lines.
//   std::size_t rows = xjob::auto_chunk_extent(x.shape(), 0, sizeof(double), 2);
[[nodiscard]] std::size_t auto_chunk_extent(std::span<std::size_t const> shape, std::size_t axis,
                                            std::size_t element_bytes, int workers);

}  // namespace xjob
